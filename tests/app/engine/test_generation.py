"""Generation traces a fixed handful of steps, whatever the number of new tokens, and gives exactly the report the
step-by-step trace gives: the reference (``reference_traces``) is run beside it on every family, in fp32 and bf16,
with enough new tokens that most steps are skipped and sliding windows fill in the middle."""

from __future__ import annotations

import pytest

from app.engine import estimate_memory
from app.engine.memory.generation import StepTotals, decode_steps_to_trace
from app.engine.memory.reference import reference_traces

from . import tiny_models as tiny

CASES = [
    ("gpt", {"preset": "nano"}, (20,), 60),
    ("huggingface", tiny.LLAMA, (20,), 50),  # grouped-query attention
    ("huggingface", tiny.GPT2, (30,), 40),
    ("huggingface", tiny.MISTRAL, (5,), 40),  # the window (16) fills after 11 decode steps
    ("huggingface", tiny.MISTRAL, (30,), 30),  # a prompt longer than the window
    ("huggingface", tiny.GEMMA2, (6,), 30),  # alternating sliding and global layers
    ("huggingface", tiny.MIXTRAL, (10,), 25),  # a mixture of experts
    ("transformer", {"preset": "tiny"}, (10, 8), 30),  # the zoo's encoder-decoder
    ("huggingface", tiny.T5, (12, 1), 25),
]
IDS = ["gpt", "llama", "gpt2", "mistral-fills", "mistral-long-prompt", "gemma2", "mixtral", "transformer", "t5"]


BF16 = {"gpt", "mistral-fills", "gemma2", "t5"}  # bf16 too where the dtype changes the kernels' paths
PARAMS = [
    pytest.param(*case, precision, id=f"{name}-{precision}")
    for case, name in zip(CASES, IDS, strict=True)
    for precision in ("fp32", "bf16")
    if precision == "fp32" or name in BF16
]


@pytest.mark.parametrize(("arch", "config", "prompt", "new_tokens", "precision"), PARAMS)
def test_skipping_steps_gives_the_step_by_step_report(arch, config, prompt, new_tokens, precision) -> None:
    kwargs = {"input_size": prompt, "batch_size": 2, "mode": "generate", "new_tokens": new_tokens}
    fast = estimate_memory(arch, config, precision=precision, **kwargs)
    with reference_traces():
        reference = estimate_memory(arch, config, precision=precision, **kwargs)
    assert fast.model_dump() == reference.model_dump()
    assert 0 < fast.kv_cache_tokens_at_peak <= fast.kv_cache_tokens


def test_the_steps_traced_do_not_grow_with_the_tokens() -> None:
    assert decode_steps_to_trace(32_768, 1024, ()) == [1, 32_767]
    # Mistral's window of 4,096 after a 1,024-token prompt: the steps before and at its filling
    assert decode_steps_to_trace(8_192, 1024, (4096,)) == [1, 2, 3071, 3072, 8191]
    assert decode_steps_to_trace(2, 10, ()) == [1]


def test_skipped_steps_are_filled_by_their_neighbours_and_a_bend_is_caught() -> None:
    totals = StepTotals()
    running = 0
    totals.start({"flops": 0})
    for step, value in ((1, 10), (5, 18)):  # affine: 10, 12, 14, 16, 18 for steps 1..5
        running += value
        totals.record(step, {"flops": running})
    assert totals.skipped() == {"flops": 12 + 14 + 16}
    odd = StepTotals()
    odd.start({"flops": 0})
    odd.record(1, {"flops": 10})
    odd.record(3, {"flops": 10 + 13})  # the step between would be 11.5: not affine
    with pytest.raises(Exception, match="flops"):
        odd.skipped()


EIGHT_BIT = [
    pytest.param(arch, config, prompt, new_tokens, kv, id=f"{name}-{kv}")
    for (arch, config, prompt, new_tokens), name in zip(CASES, IDS, strict=True)
    if name in {"llama", "mistral-fills", "gemma2", "t5"}
    for kv in ("fp8", "int8")
]


@pytest.mark.parametrize(("arch", "config", "prompt", "new_tokens", "kv_cache_dtype"), EIGHT_BIT)
def test_an_eight_bit_cache_skips_steps_exactly_and_holds_a_byte_per_element(
    arch, config, prompt, new_tokens, kv_cache_dtype
) -> None:
    """An fp8 or int8 KV cache: the report with skipped steps is the step-by-step one, and the cache holds one
    byte where the float32 cache holds four (the same layers, heads, windows and tokens)."""
    kwargs = {"input_size": prompt, "batch_size": 2, "mode": "generate", "new_tokens": new_tokens}
    fast = estimate_memory(arch, config, kv_cache_dtype=kv_cache_dtype, **kwargs)
    with reference_traces():
        reference = estimate_memory(arch, config, kv_cache_dtype=kv_cache_dtype, **kwargs)
    assert fast.model_dump() == reference.model_dump()
    full = estimate_memory(arch, config, **kwargs)
    saved = full.kv_cache_bytes - fast.kv_cache_bytes  # three quarters of the self-attention cache
    assert saved > 0 and saved * 4 % 3 == 0
    cross = full.kv_cache_bytes - saved * 4 // 3  # T5's cross-attention cache stays in the compute dtype
    assert cross == 0 if "cross-attention" not in full.kv_cache_formula else cross > 0
    assert fast.kv_cache_dtype == kv_cache_dtype
    assert "x 1 bytes" in fast.kv_cache_formula
    assert fast.peak_bytes < full.peak_bytes
