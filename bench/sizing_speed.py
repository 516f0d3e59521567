"""How long the sizing answers take, cold, on Llama-3.1-8B in bf16, beside the reference traces they replace.

Each case runs in a fresh process (nothing cached: no trace, no report), three times; the table gives the
median wall time of the call itself (the imports are not counted) and the answer, so that the fast path and
its reference can be read side by side. The references (``memory/reference.py``) trace every decode step,
every optimizer step and every sharded block; the longest of them run at a smaller size, said in the row.

    .venv/bin/python bench/sizing_speed.py [--repeats 3] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

from bench._common import machine, markdown_table  # noqa: E402

LLAMA = ("huggingface", {"preset": "llama-3.1-8b"})
GENERATE = dict(input_size=(1024,), batch_size=8, precision="bf16", mode="generate")
FSDP8 = dict(
    input_size=(1024,), batch_size=1, precision="bf16", optimizer="adamw", gpus=8, sharding="fsdp", checkpointing=True
)


def _generate(new_tokens: int, reference: bool = False, kv_cache_dtype: str = "auto") -> str:
    report = _estimate(reference, **GENERATE, new_tokens=new_tokens, kv_cache_dtype=kv_cache_dtype)
    return f"peak {report.peak_bytes:,} B, KV cache {report.kv_cache_bytes:,} B"


def _estimate(reference: bool, **options):
    from app.engine import estimate_memory
    from app.engine.memory.reference import reference_traces

    if reference:
        with reference_traces():
            return estimate_memory(*LLAMA, **options)
    return estimate_memory(*LLAMA, **options)


def _fsdp(reference: bool = False) -> str:
    report = _estimate(reference, **FSDP8)
    return f"peak {report.peak_bytes:,} B (without checkpointing {report.peak_without_checkpointing_bytes:,} B)"


def _max_batch() -> str:
    from app.engine import max_batch

    options = {k: v for k, v in GENERATE.items() if k != "batch_size"}
    report = max_batch(*LLAMA, gpu="a100-80gb", **options, new_tokens=256)
    return f"batch {report.batch_size:,} ({report.estimates} estimates)"


def _max_context() -> str:
    from app.engine import max_context

    options = {k: v for k, v in GENERATE.items() if k != "input_size"}
    report = max_context(*LLAMA, gpu="a100-80gb", **options, new_tokens=256)
    return f"{report.context_tokens:,} tokens ({report.estimates} estimates)"


def _optimizers() -> str:
    from app.engine import estimate_memory
    from app.engine.choices import OPTIMIZERS

    peaks = [
        estimate_memory("gpt", {"preset": "gpt2"}, batch_size=8, optimizer=name, checkpointing=True).peak_bytes
        for name in OPTIMIZERS
    ]
    return f"{len(peaks)} optimizers, peaks {min(peaks):,}..{max(peaks):,} B"


def _optimizers_reference() -> str:
    from app.engine.memory.reference import reference_traces

    with reference_traces():
        return _optimizers()


def _explorer_tiles() -> str:
    """What the explorer asks for the Llama preset: the inference peak, a training step per optimizer (the
    "Fits on" panel) and a generation of 128 tokens (the generation tile)."""
    from app.engine import estimate_memory
    from app.engine.choices import OPTIMIZERS

    estimate_memory(*LLAMA, mode="inference", precision="bf16")
    for name in OPTIMIZERS:
        estimate_memory(*LLAMA, optimizer=name, precision="bf16")
    report = estimate_memory(*LLAMA, mode="generate", new_tokens=128, precision="bf16")
    return f"{len(OPTIMIZERS)} optimizers; generation peak {report.peak_bytes:,} B"


CASES = {
    "explorer's Fits-on panel and generation tile (Llama preset)": _explorer_tiles,
    "generate 4,096 new tokens (b8, prompt 1,024)": lambda: _generate(4096),
    "generate 32,768 new tokens (b8, prompt 1,024)": lambda: _generate(32768),
    "generate 4,096 new tokens, fp8 KV cache": lambda: _generate(4096, kv_cache_dtype="fp8"),
    "generate 64 new tokens (b8, prompt 1,024)": lambda: _generate(64),
    "reference: generate 64 new tokens, every step traced": lambda: _generate(64, reference=True),
    "max batch, generate 1,024 + 256 on an A100 80GB": _max_batch,
    "max context at b8, 256 new tokens, on an A100 80GB": _max_context,
    "train AdamW, FSDP over 8 GPUs, checkpointing (b1, 1,024)": _fsdp,
    "reference: the same FSDP step, every block traced": lambda: _fsdp(reference=True),
    "GPT-2 every optimizer, checkpointing (b8)": _optimizers,
    "reference: GPT-2 every optimizer, each step traced whole": _optimizers_reference,
}


def run_one(name: str) -> None:
    started = time.perf_counter()
    answer = CASES[name]()
    print(json.dumps({"seconds": time.perf_counter() - started, "answer": answer}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="run the cases whose name contains this")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # a child process: run one case once
    args = parser.parse_args()
    if args.case:
        run_one(args.case)
        return
    rows = []
    for name in CASES:
        if args.only and args.only not in name:
            continue
        times, answer = [], ""
        for _ in range(args.repeats):
            child = subprocess.run(
                [sys.executable, __file__, "--case", name], capture_output=True, text=True, check=True
            )
            result = json.loads(child.stdout.strip().splitlines()[-1])
            times.append(result["seconds"])
            answer = result["answer"]
        rows.append([name, f"{statistics.median(times):.1f}", answer])
        print(f"{name}: {statistics.median(times):.1f} s", file=sys.stderr, flush=True)
    print(f"Machine: {machine()}; cold (a fresh process per run), median of {args.repeats} runs\n")
    print(markdown_table(["case", "seconds", "answer"], rows))


if __name__ == "__main__":
    main()
