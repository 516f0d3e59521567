"""GPU sizing: generation with a KV cache, checkpointing, sharding, the GPU catalog, max batch and step time.

References: the KV cache formula worked by hand on published configs, real runs on this CPU (PyTorch's own
allocations while it generates or trains), and the catalog's required entries.
"""

from __future__ import annotations

import pytest
import torch

from app.engine import GPUS, estimate_memory, estimate_step_time, max_batch, max_context
from app.engine.errors import InputError
from app.engine.memory.reference import reference_traces
from app.engine.sizing import serving_capacity
from app.engine.sizing.search import largest_fitting

from . import tiny_models

GiB = 2**30


def test_llama_kv_cache_is_the_formula_exactly() -> None:
    """Llama-3.1-8B, 8,192 cached tokens per sequence at batch 4 in bf16: 2 x 32 x 8 x 128 x 8192 x 4 x 2 = 4 GiB."""
    report = estimate_memory(
        "huggingface",
        {"preset": "llama-3.1-8b"},
        input_size=(8191,),
        batch_size=4,
        mode="generate",
        new_tokens=2,  # the prompt's 8,191 tokens, then one decode step appends the 8,192nd
        precision="bf16",
    )
    assert report.kv_cache_tokens == 8192
    assert report.kv_cache_bytes == 2 * 32 * 8 * 128 * 8192 * 4 * 2 == 4 * GiB
    assert "8 KV heads" in report.kv_cache_formula
    assert report.phase in ("prefill", "decode")


def test_sliding_window_caps_the_cache_and_matches_a_real_generate() -> None:
    config = {
        "hf_config": {
            "model_type": "mistral",
            "architectures": ["MistralForCausalLM"],
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 512,
            "sliding_window": 16,
            "max_position_embeddings": 256,
            "bos_token_id": 1,
            "eos_token_id": 2,
        }
    }
    report = estimate_memory(
        "huggingface", config, input_size=(40,), batch_size=2, mode="generate", new_tokens=6, measure=True
    )
    assert report.measured_kv_cache_bytes == report.kv_cache_bytes  # the real cache transformers built
    head_dim = 64 // 4
    assert report.kv_cache_bytes < 2 * 2 * 2 * head_dim * (40 + 5) * 2 * 4  # less than without the window
    assert abs(report.error_percent) <= 5


@pytest.mark.parametrize("kv_cache_dtype", ["fp8", "int8"])
def test_an_eight_bit_kv_cache_against_a_real_generate(kv_cache_dtype: str) -> None:
    """transformers' own generate with the 8-bit cache layers on real tensors: the cache it keeps is the one
    estimated, a quarter of the float32 cache (2 x 2 layers x 2 KV heads x 16 x 45 tokens x batch 2 x 1 byte),
    and the peak is within the error of the float32 cache's."""
    config = tiny_models.LLAMA
    options = dict(input_size=(40,), batch_size=2, mode="generate", new_tokens=6, measure=True)
    report = estimate_memory("huggingface", config, kv_cache_dtype=kv_cache_dtype, **options)
    hf = config["hf_config"]
    head_dim = hf["hidden_size"] // hf["num_attention_heads"]
    expected = 2 * hf["num_hidden_layers"] * hf["num_key_value_heads"] * head_dim * 45 * 2 * 1
    assert report.measured_kv_cache_bytes == report.kv_cache_bytes == expected
    assert abs(report.error_percent) <= 2, report.error_percent


def test_an_eight_bit_kv_cache_is_for_generation_of_hugging_face_models() -> None:
    with pytest.raises(InputError, match="applies to generation") as training:
        estimate_memory("huggingface", tiny_models.LLAMA, input_size=(8,), kv_cache_dtype="fp8")
    assert training.value.field == "kv_cache_dtype"
    with pytest.raises(InputError, match="compute dtype") as zoo:
        estimate_memory(
            "gpt", {"preset": "nano"}, input_size=(8,), mode="generate", new_tokens=2, kv_cache_dtype="int8"
        )
    assert zoo.value.field == "kv_cache_dtype"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_generation_peak_against_a_real_run(precision: str) -> None:
    report = estimate_memory(
        "gpt",
        {"preset": "nano"},
        input_size=(64,),
        batch_size=4,
        mode="generate",
        new_tokens=8,
        precision=precision,
        measure=True,
    )
    assert abs(report.error_percent) <= 5, report.error_percent
    assert (
        report.kv_cache_bytes
        == report.measured_kv_cache_bytes
        == 2 * 4 * 4 * 32 * (64 + 7) * 4 * (4 if precision == "fp32" else 2)
    )


def test_checkpointing_saves_memory_and_matches_a_real_step() -> None:
    report = estimate_memory("resnet", None, batch_size=4, optimizer="sgd", checkpointing=True, measure=True)
    assert report.checkpointing
    assert report.peak_without_checkpointing_bytes > report.peak_bytes
    assert abs(report.error_percent) <= 3, report.error_percent


def test_sharding_per_device() -> None:
    single = estimate_memory("gpt", {"preset": "nano"}, batch_size=2, optimizer="adamw")
    fsdp = estimate_memory("gpt", {"preset": "nano"}, batch_size=2, optimizer="adamw", gpus=4, sharding="fsdp")
    zero2 = estimate_memory("gpt", {"preset": "nano"}, batch_size=2, optimizer="adamw", gpus=4, sharding="zero2")
    ddp = estimate_memory("gpt", {"preset": "nano"}, batch_size=2, optimizer="adamw", gpus=4, sharding="ddp")
    trainable = sum(p.numel() for p in __import__("models").build_model("gpt", {"preset": "nano"}).parameters()) * 4
    assert fsdp.peak_bytes < zero2.peak_bytes < single.peak_bytes
    assert ddp.peak_bytes == single.peak_bytes + trainable  # DDP's gradient buckets
    assert fsdp.gpus == 4 and fsdp.sharding == "fsdp"
    assert fsdp.breakdown.optimizer_state < single.breakdown.optimizer_state / 3  # sharded 4 ways (padded)


@pytest.mark.parametrize(
    ("sharding", "checkpointing", "offload"),
    [("fsdp", True, "none"), ("zero2", False, "none"), ("fsdp", False, "all"), ("zero2", True, "optimizer")],
)
def test_sharded_estimate_from_short_copies_is_the_whole_trace(sharding: str, checkpointing: bool, offload) -> None:
    """A tiny Llama of 11 blocks: the peak, its parts and the phase extended from copies of 4, 5 and 6 blocks are
    those of tracing all 11 blocks (the reference), and the report says it took the shortcut; with offload, the
    host's peak too."""
    config = {"hf_config": {**tiny_models.LLAMA["hf_config"], "num_hidden_layers": 11}}
    options = dict(input_size=(48,), batch_size=2, optimizer="adamw", gpus=4, sharding=sharding, offload=offload)
    fast = estimate_memory("huggingface", config, checkpointing=checkpointing, **options)
    with reference_traces():
        whole = estimate_memory("huggingface", config, checkpointing=checkpointing, **options)
    assert "traced at 4, 5, 6 blocks" in fast.notes[0] and "traced whole" in whole.notes[0]
    assert (fast.peak_bytes, fast.breakdown, fast.phase, fast.persistent_bytes) == (
        whole.peak_bytes,
        whole.breakdown,
        whole.phase,
        whole.persistent_bytes,
    )
    assert fast.peak_without_checkpointing_bytes == whole.peak_without_checkpointing_bytes
    assert fast.host_bytes == whole.host_bytes


@pytest.mark.parametrize("sharding", ["fsdp", "zero2"])
def test_offload_moves_the_shards_and_the_state_to_the_host(sharding: str) -> None:
    """ZeRO-Offload keeps the optimizer state and the gradient shards on the host; FSDP2's CPU offload the
    parameter shards too: the host's peak grows by exactly the parameter shards FSDP allocated (the report
    without offload holds them between steps), and the GPU's falls."""
    options = dict(input_size=(32,), batch_size=2, optimizer="adamw", gpus=4, sharding=sharding)
    on_gpu = estimate_memory("huggingface", tiny_models.LLAMA, **options)
    optimizer = estimate_memory("huggingface", tiny_models.LLAMA, offload="optimizer", **options)
    everything = estimate_memory("huggingface", tiny_models.LLAMA, offload="all", **options)
    assert on_gpu.host_bytes is None and optimizer.offload == "optimizer"
    assert everything.host_bytes - optimizer.host_bytes == on_gpu.persistent_bytes  # the parameter shards
    assert optimizer.host_bytes >= on_gpu.breakdown.optimizer_state
    assert everything.peak_bytes < optimizer.peak_bytes < on_gpu.peak_bytes
    assert everything.breakdown.weights == 0 and everything.persistent_bytes == 0
    assert any("not measured" in note for note in optimizer.notes)
    with pytest.raises(InputError, match="sharding zero2 or fsdp") as refused:
        estimate_memory("huggingface", tiny_models.LLAMA, offload="all", **{**options, "sharding": "ddp"})
    assert refused.value.field == "offload"


def test_ddp_after_a_one_device_estimate_of_the_same_model() -> None:
    """DDP copies the model after the one-device estimate has traced the engine's own build in place (on fake
    tensors): the copy is on meta again, and the buckets are one gradient per trainable parameter."""
    from app.engine.memory.one_device import _PASSES
    from app.engine.memory.runner import meta_copy
    from app.engine.tracing.torch_internals import fake_mode

    _PASSES.clear()  # a cold cache: the one-device estimate traces the selection's own module
    report = estimate_memory("mlp", None, batch_size=2, optimizer="sgd", gpus=2, sharding="ddp")
    single = estimate_memory("mlp", None, batch_size=2, optimizer="sgd")
    weights = sum(p.numel() for p in __import__("models").build_model("mlp", None).parameters()) * 4
    assert report.peak_bytes == single.peak_bytes + weights
    with fake_mode():
        faked = torch.nn.Linear(3, 2)
    copy = meta_copy(faked).to(torch.bfloat16)
    assert copy.weight.device.type == "meta" and copy.weight.dtype == torch.bfloat16


def test_adafactor_is_refused_on_fsdp2_shards_and_runs_under_ddp() -> None:
    """torch's Adafactor cannot step a DTensor shard (pow_ on a partial norm): refused naming the optimizer, where
    a real FSDP2 run would fail too; DDP keeps whole parameters and sizes it."""
    for sharding in ("fsdp", "zero2"):
        with pytest.raises(InputError, match="adafactor with sharding") as refused:
            estimate_memory("mlp", None, batch_size=2, optimizer="adafactor", gpus=2, sharding=sharding)
        assert refused.value.field == "optimizer"
    ddp = estimate_memory("mlp", None, batch_size=2, optimizer="adafactor", gpus=2, sharding="ddp")
    assert ddp.breakdown.optimizer_state > 0


def test_gpus_are_for_training() -> None:
    with pytest.raises(InputError, match="tensor parallel: give tp"):
        estimate_memory("gpt", {"preset": "nano"}, mode="inference", gpus=2)


def test_catalog() -> None:
    required = {
        "t4-16gb",
        "l4-24gb",
        "a10g-24gb",
        "rtx4090-24gb",
        "a100-40gb",
        "a100-80gb",
        "h100-80gb",
        "h200-141gb",
        "b200-192gb",
        "mi300x-192gb",
    }
    assert required <= set(GPUS)
    for gpu in GPUS.values():
        described = gpu.describe()
        assert described["memory_bytes"] > described["usable_bytes"] > 0
        assert gpu.tflops_fp16 > gpu.tflops_fp32 > 0 and gpu.bandwidth_gb_s > 0
        assert "datasheet" in gpu.source or "whitepaper" in gpu.source or "specifications" in gpu.source
    # Capacities are what the driver reports, not the datasheet's "80 GB" read as GiB: nvidia-smi prints
    # 81559MiB for an H100 80GB HBM3, 81920MiB for an A100 80GB, 143771MiB for an H200; rocm-smi
    # 206158430208 bytes for an MI300X (totals as published in those tools' output).
    assert GPUS["h100-80gb"].memory_bytes == 81559 * 2**20 < 80 * GiB
    assert GPUS["a100-80gb"].memory_bytes == 81920 * 2**20
    assert GPUS["h200-141gb"].memory_bytes == 143771 * 2**20
    assert GPUS["mi300x-192gb"].memory_bytes == 206158430208
    assert GPUS["h100-80gb"].datasheet_gb == 80


def test_every_report_says_what_it_fits() -> None:
    report = estimate_memory(
        "huggingface", {"preset": "llama-3.1-8b"}, input_size=(16,), mode="inference", precision="bf16"
    )
    fit = {f.gpu: f for f in report.fits}
    # 8,030,261,248 published parameters x 2 bytes = 16.06 GB: more than a T4's 15,360 MiB (16.11 GB) keeps once a
    # CUDA context has its share; much less than an L4's 23,034 MiB
    assert report.peak_bytes > 8_030_261_248 * 2 > GPUS["t4-16gb"].memory_bytes - 2**30
    assert not fit["t4-16gb"].fits and fit["l4-24gb"].fits and fit["h100-80gb"].fits
    assert fit["t4-16gb"].headroom_bytes < 0 < fit["l4-24gb"].headroom_bytes


def test_max_batch_in_three_estimates_is_what_estimating_the_neighbours_says() -> None:
    """GPT-2 training on a T4: three estimates, and the answer's peak and the next batch's peak (given by the line)
    are those estimate_memory gives at both batches."""
    options = dict(input_size=(512,), mode="train", precision="bf16")
    report = max_batch("gpt", {"preset": "gpt2"}, gpu="t4-16gb", **options)
    assert report.estimates == 3 and report.next_from_line
    at = estimate_memory("gpt", {"preset": "gpt2"}, batch_size=report.batch_size, **options).peak_bytes
    after = estimate_memory("gpt", {"preset": "gpt2"}, batch_size=report.batch_size + 1, **options).peak_bytes
    assert (report.peak_bytes, report.next_peak_bytes) == (at, after)
    assert at <= report.usable_bytes < after


def test_max_context_is_what_estimating_the_neighbours_says() -> None:
    """A tiny Llama generating 32 tokens at batch 256 on a T4: the longest prompt fits and one more token does not,
    by estimate_memory itself; the config's context caps it when the memory does not."""
    config = {"hf_config": {**tiny_models.LLAMA["hf_config"], "max_position_embeddings": 1 << 16}}
    options = dict(mode="generate", new_tokens=32, precision="bf16")
    report = max_context("huggingface", config, gpu="t4-16gb", batch_size=256, **options)
    assert not report.limited_by_config and report.context_tokens == report.prompt_tokens + 32
    at = estimate_memory("huggingface", config, input_size=(report.prompt_tokens,), batch_size=256, **options)
    after = estimate_memory("huggingface", config, input_size=(report.prompt_tokens + 1,), batch_size=256, **options)
    assert (report.peak_bytes, report.next_peak_bytes) == (at.peak_bytes, after.peak_bytes)
    assert at.peak_bytes <= report.usable_bytes < after.peak_bytes
    capped = max_context("huggingface", tiny_models.LLAMA, gpu="t4-16gb", batch_size=1, **options)
    assert capped.limited_by_config and capped.context_tokens == 512 + 1  # the last new token is never fed back


@pytest.mark.parametrize(
    "peak",
    [
        lambda n: 1000 + 7 * n + (50 if n > 1 else 0),  # affine past batch 1: three estimates
        lambda n: 1000 + 3 * n * n + 5 * n,  # a parabola: four
        lambda n: 1000 + (4 * n if n < 50 else 20 * n - 800),  # the slope changes
        lambda n: 1000 + 10 * n + (n // 16) * 33,  # steps
    ],
)
def test_largest_fitting_agrees_with_trying_every_size(peak) -> None:
    for budget in (1000, 1500, 3000, 9000, 40_000, 10**9):
        fit = largest_fitting(peak, budget, low=1, high=500, first=2, second=4)
        brute = max((n for n in range(1, 501) if peak(n) <= budget), default=0)
        assert fit.size == brute, (budget, fit)
        if brute:
            assert fit.peak == peak(brute) and fit.next_peak == (peak(brute + 1) if brute < 500 else None)


def test_step_time_is_a_labelled_roofline() -> None:
    report = estimate_step_time(
        "huggingface",
        {"preset": "llama-3.1-8b"},
        gpu="h100-80gb",
        mode="generate",
        input_size=(256,),
        batch_size=1,
        new_tokens=8,
        precision="bf16",
    )
    assert report.estimate and report.bound == "memory"
    weights = 8_030_261_248 * 2
    # A decode step reads every weight once: at least weights over the bandwidth.
    assert report.decode_seconds_per_token >= weights / (3350e9)
    # the classic bound: at batch 1, a token cannot come faster than the bandwidth reads the weights
    assert report.tokens_per_second <= 3350e9 / weights
    assert any("40%" in line for line in report.assumptions)
    torch.manual_seed(0)


def test_serving_capacity_is_the_paged_layout_s_arithmetic() -> None:
    """Llama-3.1-8B bf16 on an H100 at 0.9: the weights are the published parameter count x 2 bytes (and the
    rotary buffer), a token's KV is 2 x 32 layers x 8 KV heads x 128 x 2 bytes, and the blocks are what the
    budget leaves, in blocks of 16; an fp8 cache holds twice the tokens."""
    report = serving_capacity("huggingface", {"preset": "llama-3.1-8b"}, gpu="h100-80gb", precision="bf16")
    assert report.weight_bytes - 8_030_261_248 * 2 in (0, 256)  # inv_freq: 64 fp32 values
    assert report.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2
    budget = int(GPUS["h100-80gb"].memory_bytes * 0.9)
    assert report.kv_cache_bytes == budget - report.weight_bytes - report.activation_peak_bytes
    assert report.kv_blocks == report.kv_cache_bytes // (16 * report.kv_bytes_per_token)
    assert report.kv_tokens == report.kv_blocks * 16
    assert report.max_concurrent_requests == report.kv_blocks // (2048 // 16)
    assert 0 < report.activation_peak_bytes < 2 * GiB and report.ttft_seconds > 0 and report.tpot_seconds > 0
    fp8 = serving_capacity(
        "huggingface", {"preset": "llama-3.1-8b"}, gpu="h100-80gb", precision="bf16", kv_cache_dtype="fp8"
    )
    assert fp8.kv_bytes_per_token * 2 == report.kv_bytes_per_token and fp8.kv_tokens >= 2 * report.kv_tokens - 16


def test_tensor_parallel_rank_holds_its_share_of_every_split_weight() -> None:
    """A tiny Llama over 2 ranks: each holds half of every attention and MLP projection and the whole embedding,
    norms and head (counted from the config, not the engine); layouts that do not divide are refused by name."""
    hf = {**tiny_models.LLAMA["hf_config"], "num_key_value_heads": 4}
    config = {"hf_config": hf}
    report = estimate_memory("huggingface", config, input_size=(32,), batch_size=2, optimizer="adamw", tp=2)
    hidden, inter, vocab, layers = hf["hidden_size"], hf["intermediate_size"], hf["vocab_size"], hf["num_hidden_layers"]
    kv = 4 * hidden // hf["num_attention_heads"]
    split = layers * (2 * hidden * hidden + 2 * kv * hidden + 3 * hidden * inter)
    whole = 2 * vocab * hidden + (2 * layers + 1) * hidden
    assert report.breakdown.weights == 4 * (split // 2 + whole) and report.tp == 2
    assert report.breakdown.optimizer_state >= 2 * report.breakdown.weights
    with pytest.raises(InputError, match="num_attention_heads=4") as caught:
        estimate_memory("huggingface", config, input_size=(32,), tp=8)
    assert caught.value.field == "tp"
    with pytest.raises(InputError, match="base_model_tp_plan"):
        estimate_memory("huggingface", tiny_models.GPT2, input_size=(32,), tp=2)


def test_pipeline_stages_hold_their_share_and_the_first_holds_the_most_micro_batches() -> None:
    """A tiny Llama in 2 stages: the first holds the embeddings and its half of the blocks, the last its half,
    the final norm and the head (weights counted from the config, not the engine); under 1F1B the first stage
    holds 2 micro-batches' activations and the last 1. Layouts that do not divide are refused by name."""
    hf = {**tiny_models.LLAMA["hf_config"], "tie_word_embeddings": False}
    config = {"hf_config": hf}
    report = estimate_memory("huggingface", config, input_size=(32,), batch_size=4, optimizer="adamw", pp=2)
    hidden, inter, vocab, layers = hf["hidden_size"], hf["intermediate_size"], hf["vocab_size"], hf["num_hidden_layers"]
    kv = hf["num_key_value_heads"] * hidden // hf["num_attention_heads"]
    block = 2 * hidden * hidden + 2 * kv * hidden + 3 * hidden * inter + 2 * hidden
    first, last = report.stages
    assert first.breakdown.weights == 4 * (vocab * hidden + layers // 2 * block)
    assert last.breakdown.weights == 4 * (layers // 2 * block + hidden + vocab * hidden)
    assert (first.in_flight_microbatches, last.in_flight_microbatches) == (2, 1)
    assert report.peak_bytes == max(first.peak_bytes, last.peak_bytes) and report.microbatches == 2
    with pytest.raises(InputError, match=f"num_hidden_layers={layers}") as caught:
        estimate_memory("huggingface", config, input_size=(32,), batch_size=4, pp=3)
    assert caught.value.field == "pp"
    with pytest.raises(InputError, match="does not divide the batch of 3") as caught:
        estimate_memory("huggingface", config, input_size=(32,), batch_size=3, pp=2)
    assert caught.value.field == "microbatches"
    with pytest.raises(InputError, match="training steps"):
        estimate_memory("huggingface", config, input_size=(32,), mode="inference", pp=2)
    with pytest.raises(InputError, match="fewer than pp=2"):
        estimate_memory("huggingface", config, input_size=(32,), batch_size=4, pp=2, microbatches=1)
    with pytest.raises(InputError, match="no such stack"):
        estimate_memory("huggingface", tiny_models.GPT2, input_size=(32,), batch_size=2, pp=2)


def test_pipeline_stages_match_a_real_1f1b_run_over_two_processes(tmp_path) -> None:
    """torch.distributed.pipelining's Schedule1F1B over 2 gloo processes (bench/sizing_accuracy.py's run): each
    stage's real peak, read from the profiler's allocation events, against its estimate."""
    import json

    import torch.multiprocessing as mp

    from bench.sizing_accuracy import LLAMA, _free_port, _hf, _pipeline_rank

    batch, microbatches = 4, 2
    mp.spawn(_pipeline_rank, args=(2, _free_port(), microbatches, batch, str(tmp_path)), nprocs=2)
    measured = [json.loads((tmp_path / f"rank{r}.json").read_text())["peak"] for r in range(2)]
    ids = torch.randint(3, LLAMA["vocab_size"], (batch, 128))
    report = estimate_memory(
        _hf("llama"), input_data={"input_ids": ids}, optimizer="adamw", pp=2, microbatches=microbatches
    )
    for stage, peak in zip(report.stages, measured, strict=True):
        assert abs(stage.peak_bytes - peak) / peak < 0.02, (stage.stage, stage.peak_bytes, peak)


@pytest.mark.parametrize(("pp", "microbatches", "checkpointing"), [(2, 4, False), (2, 6, True), (3, 6, False)])
def test_pipeline_shortcuts_equal_the_whole_schedule(pp: int, microbatches: int, checkpointing: bool) -> None:
    """Fewer micro-batches traced and the optimizer-only warm-up give every stage exactly what tracing the whole
    schedule after a whole warm-up step gives (reference_traces)."""
    config = {"hf_config": {**tiny_models.LLAMA["hf_config"], "num_hidden_layers": 6}}
    options = dict(input_size=(32,), batch_size=microbatches, optimizer="adamw", pp=pp, microbatches=microbatches)
    fast = estimate_memory("huggingface", config, **options, checkpointing=checkpointing)
    with reference_traces():
        whole = estimate_memory("huggingface", config, **options, checkpointing=checkpointing)
    assert fast.stages == whole.stages
