"""Serving capacity as vLLM plans it: how many KV-cache blocks a GPU keeps, and how many requests they serve.

vLLM takes a share of the GPU's memory (``gpu_memory_utilization``, 0.9 by default),
profiles a forward of ``max_num_batched_tokens`` tokens, and gives what the weights and
that forward's activation peak leave to a paged KV cache of blocks of 16 tokens:

    kv_cache_bytes = memory x utilization - weights - activation peak - non-torch memory
    blocks = kv_cache_bytes // (block_size x KV bytes per token)

Here the weights (quantized or not) and the activation peak are the exact trace's: a
prefill of ``max_num_batched_tokens`` tokens (one chunk, as chunked prefill runs it) with
the family's KV cache, its logits for the last token only, less the weights and the
chunk's own cache. The KV bytes per token are the traced cache's (every layer's K and
V, in the KV cache's dtype: fp8 and int8 keep one byte per element). The latency is a
roofline, labelled as an estimate, with its assumptions as arguments.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..choices import KvCacheDtype, dtype_name
from ..errors import InputError
from ..gpus import DEFAULT_GPU, get_gpu
from ..memory import estimate_memory, token_context
from ..step import Step


class ServingReport(BaseModel):
    """KV-cache blocks, tokens and concurrent requests on one GPU, and the latency they imply (an estimate)."""

    kind: Literal["serving"] = "serving"
    gpu: str
    gpu_memory_bytes: int
    gpu_memory_utilization: float
    budget_bytes: int = Field(description="gpu_memory_bytes x gpu_memory_utilization: what the engine may take.")
    weight_bytes: int = Field(description="Weights and buffers as stored (quantized layouts counted exactly).")
    activation_peak_bytes: int = Field(description="The prefill chunk's peak above its weights and its own cache.")
    non_torch_bytes: int = Field(description="Memory outside PyTorch's allocator assumed (CUDA graphs, NCCL...).")
    kv_cache_bytes: int = Field(description="What is left for the paged KV cache (0 when nothing is).")
    kv_cache_dtype: str
    kv_bytes_per_token: int = Field(description="Every layer's K and V for one token.")
    block_size: int
    block_bytes: int
    kv_blocks: int
    kv_tokens: int = Field(description="kv_blocks x block_size: tokens the cache holds at once.")
    max_num_batched_tokens: int
    prompt_tokens: int
    output_tokens: int
    tokens_per_request: int
    max_concurrency: float = Field(description="kv_tokens / tokens_per_request, as vLLM logs it.")
    max_concurrent_requests: int = Field(description="Whole requests, each taking whole blocks.")
    ttft_seconds: float = Field(description="Time to the first token: the prompt's prefill (roofline estimate).")
    tpot_seconds: float = Field(
        description="Time per output token with max_concurrent_requests decoding (roofline estimate)."
    )
    output_tokens_per_second: float = Field(description="Whole GPU, at max_concurrent_requests.")
    estimate: bool = Field(True, description="The latency is a model, not a measurement.")
    assumptions: list[str]
    notes: list[str] = Field(default_factory=list)


def serving_capacity(
    model_or_name: str,
    config: dict[str, Any] | None = None,
    gpu: str = DEFAULT_GPU,
    gpu_memory_utilization: float = 0.9,
    block_size: int = 16,
    max_num_batched_tokens: int = 2048,
    prompt_tokens: int = 1024,
    output_tokens: int = 1024,
    kv_cache_dtype: KvCacheDtype = "auto",
    non_torch_bytes: int = 0,
    utilization: float = 0.4,
    bandwidth_efficiency: float = 0.8,
    max_modules: int | None = None,
    **step_options: Any,
) -> ServingReport:
    """How many tokens of KV cache, and how many concurrent requests of ``prompt_tokens + output_tokens``, one GPU
    serves at ``gpu_memory_utilization``; ``step_options`` are the step's precision and quantization."""
    if not 0 < gpu_memory_utilization <= 1:
        raise InputError("gpu_memory_utilization is a share of the GPU's memory, in (0, 1]", "gpu_memory_utilization")
    if block_size not in (1, 8, 16, 32, 64, 128):
        raise InputError("block_size is one of vLLM's: 1, 8, 16, 32, 64 or 128", "block_size")
    step = Step.of(**step_options, mode="generate", new_tokens=1)
    device = get_gpu(gpu)
    context = token_context(model_or_name, config)
    if context is None:
        raise InputError(f"{model_or_name} does not take tokens: serving capacity is for token models", "architecture")
    if prompt_tokens + output_tokens > context:
        raise InputError(
            f"a request of {prompt_tokens:,} + {output_tokens:,} tokens passes this config's context of {context:,}",
            "output_tokens",
        )
    max_num_batched_tokens = min(max_num_batched_tokens, context)  # a chunk is one sequence: the context caps it
    chunk = estimate_memory(
        model_or_name, config, input_size=(max_num_batched_tokens,), step=step, max_modules=max_modules
    )
    if not chunk.kv_cache_bytes or not chunk.kv_cache_tokens:
        raise InputError("serving capacity is for models that decode with a KV cache", "architecture")
    weights = chunk.breakdown.weights + chunk.breakdown.buffers
    activation = chunk.peak_bytes - weights - chunk.breakdown.inputs - chunk.kv_cache_bytes
    per_token = chunk.kv_cache_bytes // chunk.kv_cache_tokens
    if kv_cache_dtype != "auto":
        per_token = per_token // step.compute_dtype.itemsize  # one byte per element instead of the traced dtype's
    budget = int(device.memory_bytes * gpu_memory_utilization)
    kv_bytes = max(0, budget - weights - activation - non_torch_bytes)
    block_bytes = per_token * block_size
    blocks = kv_bytes // block_bytes
    per_request = prompt_tokens + output_tokens
    whole = blocks // math.ceil(per_request / block_size)
    ttft, tpot, assumptions = _latency(
        device,
        step,
        chunk,
        weights,
        per_token,
        prompt_tokens,
        output_tokens,
        max(1, whole),
        utilization,
        bandwidth_efficiency,
    )
    notes = [
        f"the activation peak is a prefill of {max_num_batched_tokens:,} tokens as one sequence (one chunk of "
        "chunked prefill), its logits for the last token only; vLLM's own profile run spreads them over "
        "max_num_seqs sequences, which changes the logits' share",
        "every layer keeps every token (vLLM's allocator for models of one attention kind); sliding-window layers "
        "would free blocks past their window",
    ]
    if kv_bytes == 0:
        notes.append("the weights and the prefill's activations leave nothing for the KV cache")
    return ServingReport(
        gpu=gpu,
        gpu_memory_bytes=device.memory_bytes,
        gpu_memory_utilization=gpu_memory_utilization,
        budget_bytes=budget,
        weight_bytes=weights,
        activation_peak_bytes=activation,
        non_torch_bytes=non_torch_bytes,
        kv_cache_bytes=kv_bytes,
        kv_cache_dtype=kv_cache_dtype if kv_cache_dtype != "auto" else dtype_name(step.compute_dtype),
        kv_bytes_per_token=per_token,
        block_size=block_size,
        block_bytes=block_bytes,
        kv_blocks=blocks,
        kv_tokens=blocks * block_size,
        max_num_batched_tokens=max_num_batched_tokens,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        tokens_per_request=per_request,
        max_concurrency=blocks * block_size / per_request,
        max_concurrent_requests=whole,
        ttft_seconds=ttft,
        tpot_seconds=tpot,
        output_tokens_per_second=max(1, whole) / tpot,
        assumptions=assumptions,
        notes=notes,
    )


def _latency(
    device: Any,
    step: Step,
    chunk: Any,
    weights: int,
    per_token: int,
    prompt: int,
    output: int,
    sequences: int,
    utilization: float,
    bandwidth_efficiency: float,
) -> tuple[float, float, list[str]]:
    """Roofline prefill and decode: the traced FLOPs per token scaled to the prompt, against the bytes read."""
    flop_rate = device.peak_tflops(step.compute_dtype) * 1e12 * utilization
    byte_rate = device.bandwidth_gb_s * 1e9 * bandwidth_efficiency
    flops_per_token = chunk.step_flops / (chunk.prompt_tokens or 1)
    ttft = max(flops_per_token * prompt / flop_rate, weights / byte_rate)
    context = prompt + output // 2  # the cache's mean length over the output
    tpot = max(flops_per_token * sequences / flop_rate, (weights + sequences * context * per_token) / byte_rate)
    assumptions = [
        f"{device.name}: {device.peak_tflops(step.compute_dtype):,.1f} TFLOP/s dense, {device.bandwidth_gb_s:,.0f} "
        f"GB/s; {utilization:.0%} of the FLOP/s and {bandwidth_efficiency:.0%} of the bandwidth reached",
        "prefill: the prompt's FLOPs (the traced chunk's per token), or reading the weights once; decode: one token "
        f"for each of {sequences:,} sequences reads every weight once and each sequence's cache at its mean length",
    ]
    return ttft, tpot, assumptions
