"""Sizing estimates against real runs on this machine's CPU: generation, activation checkpointing, sharding.

- generation: ``estimate_memory(mode="generate")`` against the real ``model.generate`` of a small Llama-style
  (grouped-query attention) and a GPT-2-style Hugging Face config, and the zoo's gpt and transformer loops,
  in fp32 and bf16; the KV cache's bytes against the real cache's;
- checkpointing: real training steps with it on;
- sharding: real FSDP2 (ZeRO-3 and ZeRO-2) and DDP runs over 2 and 4 local processes with the gloo backend;
  each rank's peak against the per-device estimate for the same N;
- tensor parallel: DTensor over 2 and 4 processes, the config's own plan;
- pipeline parallel: torch.distributed.pipelining's 1F1B schedule over 2 and 4 processes, every stage.

Peaks are read from the profiler's allocation events, as for the memory table. gloo frees the input
copies of its collectives on its own thread, where the profiler records nothing: a block allocated inside a
collective and never freed in the rank's own thread is counted as freed when that collective ends.

    .venv/bin/python bench/sizing_accuracy.py [--only generation|checkpointing|sharding|tp|pp]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from bench._common import machine, markdown_table  # noqa: E402

SMALL_GPT = {"vocab_size": 2048, "context": 256, "d_model": 256, "layers": 4, "heads": 8}
LLAMA = dict(
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=2,
    vocab_size=4096,
    max_position_embeddings=1024,
    bos_token_id=1,
    eos_token_id=2,
)
GPT2 = dict(n_embd=256, n_layer=4, n_head=8, vocab_size=4096, n_positions=1024, bos_token_id=1, eos_token_id=2)
COLLECTIVES = ("gloo", "c10d", "all_reduce", "allreduce", "all_gather", "allgather", "reduce_scatter", "broadcast")


def _error(estimate: int, measured: int) -> str:
    return f"{(estimate - measured) / measured * 100:+.2f}%"


def _hf(kind: str) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "llama-tp":  # four KV heads, so that 4 ranks split them evenly
        return LlamaForCausalLM(LlamaConfig(**{**LLAMA, "num_key_value_heads": 4})).eval()
    model = LlamaForCausalLM(LlamaConfig(**LLAMA)) if kind == "llama" else GPT2LMHeadModel(GPT2Config(**GPT2))
    return model.eval()


def generation_rows() -> list[list[str]]:
    from app.engine import estimate_memory

    rows = []
    cases = [
        ("Llama-style GQA (HF generate)", lambda: (_hf("llama"),), {"input_data_len": 256, "batch": 4}),
        ("GPT-2-style (HF generate)", lambda: (_hf("gpt2"),), {"input_data_len": 256, "batch": 4}),
        ("gpt (zoo loop)", lambda: ("gpt", SMALL_GPT), {"input_size": (128,), "batch": 4}),
        (
            "transformer tiny (zoo loop)",
            lambda: ("transformer", {"preset": "tiny"}),
            {"input_size": (64, 8), "batch": 4},
        ),
    ]
    for label, make, shape in cases:
        for precision in ("fp32", "bf16"):
            args = make()
            kwargs = {"mode": "generate", "new_tokens": 64, "precision": precision, "measure": True}
            if "input_data_len" in shape:
                ids = torch.randint(3, 4096, (shape["batch"], shape["input_data_len"]))
                kwargs["input_data"] = {"input_ids": ids}
            else:
                kwargs |= {"input_size": shape["input_size"], "batch_size": shape["batch"]}
            report = estimate_memory(*args, **kwargs)
            kv = (
                "exact"
                if report.measured_kv_cache_bytes == report.kv_cache_bytes
                else (f"{report.kv_cache_bytes:,} vs {report.measured_kv_cache_bytes:,}")
            )
            rows.append(
                [
                    "generation",
                    f"{label}, batch {report.batch_size}, prompt {report.prompt_tokens}, +64 tokens",
                    precision,
                    f"{report.peak_bytes / 2**20:,.2f}",
                    f"{report.measured_peak_bytes / 2**20:,.2f}",
                    _error(report.peak_bytes, report.measured_peak_bytes),
                    f"{report.phase}; KV cache {report.kv_cache_bytes / 2**20:,.2f} MiB ({kv})",
                ]
            )
            print(f"  generation {label} {precision}: done", file=sys.stderr)
    return rows


def checkpointing_rows() -> list[list[str]]:
    from app.engine import estimate_memory

    rows = []
    cases = [
        ("gpt", lambda: ("gpt", SMALL_GPT), {"input_size": (256,), "batch_size": 8}),
        ("resnet-18", lambda: ("resnet", None), {"batch_size": 8}),
        (
            "Llama-style (HF)",
            lambda: (_hf("llama").train(),),
            {"input_data": {"input_ids": torch.randint(3, 4096, (4, 256))}},
        ),
    ]
    for label, make, kwargs in cases:
        for precision in ("fp32", "bf16"):
            report = estimate_memory(
                *make(),
                **kwargs,
                mode="train",
                optimizer="adamw",
                precision=precision,
                checkpointing=True,
                measure=True,
            )
            saving = report.peak_without_checkpointing_bytes - report.peak_bytes
            rows.append(
                [
                    "checkpointing",
                    f"{label}, AdamW, batch {report.batch_size}",
                    precision,
                    f"{report.peak_bytes / 2**20:,.2f}",
                    f"{report.measured_peak_bytes / 2**20:,.2f}",
                    _error(report.peak_bytes, report.measured_peak_bytes),
                    f"saves {saving / 2**20:,.1f} MiB of {report.peak_without_checkpointing_bytes / 2**20:,.1f}",
                ]
            )
            print(f"  checkpointing {label} {precision}: done", file=sys.stderr)
    return rows


# ---------------------------------------------------------------- real sharded runs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


RANGES = ("setup", "warm-up", "measured")  # what each rank's own thread runs, as profiler ranges


def rank_peak(prof: torch.profiler.profile, start: int, end: int, baseline: int) -> int:
    """One rank's peak from its allocation events.

    gloo frees the input copies of its collectives on its own thread, where the profiler
    records no free. A block allocated inside a collective op and never freed in the
    rank's thread is counted as freed when that op ends; one allocated by gloo's own
    thread (outside the rank's ranges) and never seen freed, as freed at once.
    """
    allocations = []  # (time, ptr, size, when an unmatched free is assumed, or None)

    def walk(nodes: list, release: int | None, ours: bool) -> None:
        for node in nodes:
            kind, fields = node.typed
            if str(kind).endswith("Allocation"):
                assumed = release if ours else node.start_time_ns
                allocations.append((node.start_time_ns, fields.ptr, fields.alloc_size, assumed))
                continue
            name = node.name.lower()
            inside = release
            if inside is None and any(word in name for word in COLLECTIVES):
                inside = node.start_time_ns + node.duration_time_ns
            walk(node.children, inside, ours or node.name in RANGES)

    walk(prof.profiler.kineto_results.experimental_event_tree(), None, False)
    allocations.sort(key=lambda a: a[0])
    open_blocks: dict[int, tuple[int, int | None]] = {}
    for _, ptr, size, assumed in allocations:
        if size > 0:
            open_blocks[ptr] = (size, assumed)
        else:
            open_blocks.pop(ptr, None)
    events = [(time, size) for time, _, size, _ in allocations]
    events += [(assumed, -size) for size, assumed in open_blocks.values() if assumed is not None]
    events.sort()
    live, peak = baseline, None
    for time, size in events:
        if time > end:
            break
        if time >= start and peak is None:
            peak = live
        live += size
        if time >= start:
            peak = max(peak, live)
    return peak if peak is not None else live


def _rank(rank: int, world: int, port: int, sharding: str, model_kind: str, batch: int, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel
    from torch.profiler import ProfilerActivity, profile, record_function

    import models
    from app.engine.choices import OPTIMIZERS
    from app.engine.memory.checkpointing import repeated_blocks
    from app.engine.memory.runner import storage_bytes
    from app.engine.tracing.torch_internals import parallelize

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(1)  # the same batch on every rank (tensor parallelism needs it)
    tokens = torch.randint(3, 2048, (batch, 128))
    targets = torch.randint(3, 2048, (batch, 128))
    baseline = storage_bytes([tokens, targets])
    # Everything else is made inside the profile, so each block's allocation and free are both seen.
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof, record_function("setup"):
        torch.manual_seed(0)
        model = models.build_model("gpt", SMALL_GPT) if model_kind == "gpt" else _hf(model_kind).train()
        model.train()
        if sharding == "ddp":
            model = DistributedDataParallel(model)
        elif sharding == "tp":
            mesh = torch.distributed.device_mesh.init_device_mesh("cpu", (world,))
            parallelize(model.base_model, mesh, model.config.base_model_tp_plan)
        else:
            mesh = torch.distributed.device_mesh.init_device_mesh("cpu", (world,))
            for block in repeated_blocks(model):
                fully_shard(block, mesh=mesh, reshard_after_forward=sharding == "fsdp")
            fully_shard(model, mesh=mesh, reshard_after_forward=sharding == "fsdp")
        optimizer = OPTIMIZERS["adamw"].build([p for p in model.parameters() if p.requires_grad])

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            output = model(tokens) if model_kind == "gpt" else model(input_ids=tokens).logits
            loss = torch.nn.functional.cross_entropy(output.flatten(0, 1), targets.flatten())
            del output
            loss.backward()
            del loss
            optimizer.step()

        with record_function("warm-up"):
            step()  # gradients and optimizer state exist before the measured step
        dist.barrier()
        with record_function("measured"):
            step()
    measured = next(e for e in prof.profiler.kineto_results.events() if e.name() == "measured")
    peak = rank_peak(prof, measured.start_ns(), measured.end_ns(), baseline)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"peak": peak}))
    dist.barrier()
    dist.destroy_process_group()


def sharding_rows() -> list[list[str]]:
    import torch.multiprocessing as mp

    from app.engine import estimate_memory

    rows = []
    for model_kind in ("gpt", "llama"):
        for sharding in ("fsdp", "zero2", "ddp"):
            for world in (2, 4):
                batch = 4
                with tempfile.TemporaryDirectory() as out:
                    mp.spawn(_rank, args=(world, _free_port(), sharding, model_kind, batch, out), nprocs=world)
                    peaks = [json.loads(Path(out, f"rank{r}.json").read_text())["peak"] for r in range(world)]
                target = ("gpt", SMALL_GPT) if model_kind == "gpt" else (_hf("llama"),)
                extra = {"input_size": (128,)} if model_kind == "gpt" else {}
                if model_kind != "gpt":
                    extra["input_data"] = {"input_ids": torch.randint(3, 4096, (batch, 128))}
                else:
                    extra["batch_size"] = batch
                report = estimate_memory(*target, **extra, optimizer="adamw", gpus=world, sharding=sharding)
                worst = max(peaks)
                label = "gpt (4 blocks)" if model_kind == "gpt" else "Llama-style (HF, 4 blocks)"
                rows.append(
                    [
                        "sharding",
                        f"{label}, {sharding}, {world} ranks, batch {batch} per rank",
                        "fp32",
                        f"{report.peak_bytes / 2**20:,.2f}",
                        f"{worst / 2**20:,.2f}",
                        _error(report.peak_bytes, worst),
                        "ranks: " + ", ".join(f"{p / 2**20:,.2f}" for p in peaks) + " MiB",
                    ]
                )
                print(f"  sharding {model_kind} {sharding} {world}: done", file=sys.stderr)
    return rows


def tensor_parallel_rows() -> list[list[str]]:
    """DTensor tensor parallelism (the config's own plan) over 2 and 4 gloo processes: every rank's peak."""
    import torch.multiprocessing as mp

    from app.engine import estimate_memory

    rows = []
    for world in (2, 4):
        batch = 4
        with tempfile.TemporaryDirectory() as out:
            mp.spawn(_rank, args=(world, _free_port(), "tp", "llama-tp", batch, out), nprocs=world)
            peaks = [json.loads(Path(out, f"rank{r}.json").read_text())["peak"] for r in range(world)]
        torch.manual_seed(1)
        ids = torch.randint(3, 2048, (batch, 128))
        report = estimate_memory(_hf("llama-tp"), input_data={"input_ids": ids}, optimizer="adamw", tp=world)
        worst = max(peaks, key=lambda p: abs(p - report.peak_bytes))
        rows.append(
            [
                "tensor parallel",
                f"Llama-style (HF, 4 blocks, 4 KV heads), tp={world}, batch {batch} per group",
                "fp32",
                f"{report.peak_bytes / 2**20:,.2f}",
                f"{worst / 2**20:,.2f}",
                _error(report.peak_bytes, worst),
                "ranks: "
                + ", ".join(f"{p / 2**20:,.2f}" for p in peaks)
                + " MiB (the rank farthest from the estimate)",
            ]
        )
        print(f"  tensor parallel {world}: done", file=sys.stderr)
    return rows


def _pipeline_rank(rank: int, world: int, port: int, microbatches: int, batch: int, out: str) -> None:
    """One stage of a real 1F1B pipeline (torch.distributed.pipelining over gloo): its peak during one step."""
    import torch.distributed as dist
    from torch.profiler import ProfilerActivity, profile, record_function

    from app.engine.choices import OPTIMIZERS
    from app.engine.memory.pipeline_parallel import PipelineStageModule, _token_loss
    from app.engine.memory.runner import storage_bytes
    from app.engine.tracing.torch_internals import pipeline_schedule

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    module = PipelineStageModule(_hf("llama").train(), rank, world)  # the other stages' blocks are freed here
    micro = batch // microbatches
    torch.manual_seed(1)
    tokens = torch.randint(3, LLAMA["vocab_size"], (batch, 128)) if module.is_first else None
    targets = torch.randint(3, LLAMA["vocab_size"], (batch, 128)) if module.is_last else None
    example = tokens[:micro] if module.is_first else torch.zeros(micro, 128, LLAMA["hidden_size"])
    with torch.no_grad():
        example_output = module(example)
    example.requires_grad_(not module.is_first)
    example_output.requires_grad_(not module.is_last)
    schedule = pipeline_schedule(
        module, rank, world, torch.device("cpu"), microbatches, example, example_output, _token_loss
    )
    del example, example_output
    inputs = [t for t in (tokens, targets) if t is not None]
    baseline = storage_bytes([*module.parameters(), *module.buffers(), *inputs])
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof, record_function("setup"):
        optimizer = OPTIMIZERS["adamw"].build(list(module.parameters()))

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            schedule.step(*([tokens] if module.is_first else []), **({"target": targets} if module.is_last else {}))
            optimizer.step()

        with record_function("warm-up"):
            step()  # gradients, optimizer state and the receive buffers exist before the measured step
        dist.barrier()
        with record_function("measured"):
            step()
    measured = next(e for e in prof.profiler.kineto_results.events() if e.name() == "measured")
    peak = rank_peak(prof, measured.start_ns(), measured.end_ns(), baseline)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"peak": peak}))
    dist.barrier()
    dist.destroy_process_group()


def pipeline_rows() -> list[list[str]]:
    """A 1F1B pipeline (torch.distributed.pipelining) over 2 and 4 gloo processes: every stage's peak."""
    import torch.multiprocessing as mp

    from app.engine import estimate_memory

    rows = []
    batch = 8
    for world, microbatches in ((2, 4), (2, 8), (4, 4), (4, 8)):
        with tempfile.TemporaryDirectory() as out:
            mp.spawn(_pipeline_rank, args=(world, _free_port(), microbatches, batch, out), nprocs=world)
            peaks = [json.loads(Path(out, f"rank{r}.json").read_text())["peak"] for r in range(world)]
        ids = torch.randint(3, LLAMA["vocab_size"], (batch, 128))
        report = estimate_memory(
            _hf("llama"), input_data={"input_ids": ids}, optimizer="adamw", pp=world, microbatches=microbatches
        )
        for stage, measured in zip(report.stages or [], peaks, strict=True):
            rows.append(
                [
                    "pipeline parallel",
                    f"Llama-style (HF, 4 blocks), pp={world}, {microbatches} micro-batches of {batch // microbatches}, "
                    f"stage {stage.stage} ({stage.holds})",
                    "fp32",
                    f"{stage.peak_bytes / 2**20:,.2f}",
                    f"{measured / 2**20:,.2f}",
                    _error(stage.peak_bytes, measured),
                    f"{stage.in_flight_microbatches} in flight",
                ]
            )
        print(f"  pipeline parallel {world} x {microbatches}: done", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["generation", "checkpointing", "sharding", "tp", "pp"])
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = []
    if args.only in (None, "generation"):
        rows += generation_rows()
    if args.only in (None, "checkpointing"):
        rows += checkpointing_rows()
    if args.only in (None, "sharding"):
        rows += sharding_rows()
    if args.only in (None, "tp"):
        rows += tensor_parallel_rows()
    if args.only in (None, "pp"):
        rows += pipeline_rows()
    print(f"Machine: {machine()}; real runs on the CPU\n")
    headers = ["What", "Case", "Precision", "Estimate MiB", "Measured MiB", "Error", "Notes"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
