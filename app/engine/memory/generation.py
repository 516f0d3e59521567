"""Generation: how a model generates, which of its steps an estimate traces, and what its KV cache holds.

``decoding_for`` finds how a model generates (its family's ``GreedyDecoding``: a
prefill, then a decode step per new token; for a Hugging Face model, ``generate``
itself on real data and the same steps on fake tensors).

An estimate does not trace every decode step: their peaks only grow with the cache
(the cache, the generated ids and the attention over them all grow), and their FLOPs
and outputs are affine in the step between the points where a sliding window fills.
``run_generation`` traces the prefill, the first decode step (and the second, with a
sliding window), the two steps around each window's filling and the last step; between them the decoding's ``skip(n)``
leaves the cache and ids exactly as ``n`` steps would (the peak tracker frozen), and
``StepTotals`` adds what the skipped steps would have added, from the traced steps
on either side. The number of traced steps does not depend on ``new_tokens``; the
result equals the step-by-step trace (tests compare them on every family).

``kv_cache`` reads the cache a generation leaves: its bytes are exactly
2 x layers x KV heads x head dim x tokens x batch x bytes per element, because they
are the cache's own tensors (sliding-window layers keep their window, grouped-query
attention its KV heads).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import models

from ..errors import InputError
from ..tracing.selection import Selection, is_hugging_face
from ..units import format_bytes


def decoding_for(selection: Selection) -> type:
    """The ``GreedyDecoding`` class this model generates with."""
    arch = models.get_architecture(selection.architecture) if selection.architecture else None
    if arch is not None and arch.generate is not None:
        return arch.generate
    if arch is None and is_hugging_face(selection.module) and selection.module.can_generate():
        from models.huggingface import GreedyHuggingFace

        return GreedyHuggingFace
    what = arch.name if arch is not None else type(selection.module).__name__
    raise InputError(
        f"{what} does not generate text: mode 'generate' is for language models (gpt, transformer, a Hugging Face "
        "model with a language-model head)",
        "mode",
    )


def decode_steps_to_trace(new_tokens: int, prompt_tokens: int, windows: tuple[int, ...]) -> list[int]:
    """Decode steps (1 .. new_tokens - 1) an estimate traces: the first, the last, and for each sliding window the
    step before it fills and the step it fills (there a layer's keys stop growing and its mask appears). With a
    sliding window the second too: after a prompt longer than the window, the first decode step still holds the
    prompt's keys (a window's cache is a view of them) and is unlike the steps after it."""
    last = new_tokens - 1
    steps = {1, last, *([2] if windows else [])}
    for window in windows:
        fills = window - prompt_tokens  # decode step k attends over prompt_tokens + k positions
        steps.update({fills - 1, fills})
    return sorted(k for k in steps if 1 <= k <= last)


class NotAffineError(Exception):
    """Skipped steps' totals are not affine between the traced steps around them: trace every step instead."""


@dataclass
class StepTotals:
    """Per traced step, the quantities a step adds (FLOPs, each layer's output bytes), and what skipped steps add.

    ``record(step, values)`` takes the running totals after a traced step; ``skipped()`` gives, for each
    quantity, the sum over the skipped steps, each gap filled by the trapezoid of its two traced neighbours
    (exact when the quantity is affine in the step, which holds between the traced steps).
    """

    _last: dict[str, int] = field(default_factory=dict)
    per_step: dict[int, dict[str, int]] = field(default_factory=dict)

    def start(self, totals: dict[str, int]) -> None:
        self._last = dict(totals)

    def record(self, step: int, totals: dict[str, int]) -> None:
        self.per_step[step] = {key: value - self._last.get(key, 0) for key, value in totals.items()}
        self._last = dict(totals)

    def skipped(self) -> dict[str, int]:
        added: dict[str, int] = {}
        steps = sorted(self.per_step)
        for before, after in itertools.pairwise(steps):
            gap = after - before - 1
            if gap <= 0:
                continue
            left, right = self.per_step[before], self.per_step[after]
            for key in {*left, *right}:
                twice = gap * (left.get(key, 0) + right.get(key, 0))
                if twice % 2:
                    raise NotAffineError(key)
                added[key] = added.get(key, 0) + twice // 2
        return added


@dataclass
class TracedSteps:
    """What the estimate does around the steps of a generation: measure after a traced one, freeze around a skip."""

    totals: Callable[[], dict[str, int]]  # the running totals (FLOPs, output bytes by layer) now
    frozen: Callable[[], contextlib.AbstractContextManager]  # the peak tracker ignores what a skip allocates
    on_skip: Callable[[int], None]  # n decode steps were skipped
    steps: StepTotals = field(default_factory=StepTotals)


def run_generation(decoding: Any, new_tokens: int, on_step: Callable[[str], None], traced: TracedSteps | None) -> Any:
    """Generate ``new_tokens`` tokens: every step (``traced`` None: the reference), or the steps that decide the
    peak with the others skipped. Returns the cache."""
    skippable = getattr(decoding, "skippable", lambda: True)
    if traced is None:
        return decoding.run(new_tokens, on_step)
    traced.steps.start(traced.totals())
    on_step("prefill")
    decoding.prefill()
    traced.steps.record(0, traced.totals())
    every = range(1, new_tokens)  # a cache whose state after skipped steps cannot be reproduced: trace them all
    wanted = decode_steps_to_trace(new_tokens, decoding.cached_tokens(), decoding.windows()) if skippable() else every
    step = 1
    for target in wanted:
        if target > step:
            with traced.frozen():
                decoding.skip(target - step)
            traced.on_skip(target - step)
            step = target
        on_step("decode")
        decoding.decode()
        traced.steps.record(step, traced.totals())
        step += 1
    return decoding.cache


def cache_tensors(cache: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(self-attention, cross-attention) key and value tensors of a KV cache: ours, or transformers' caches."""
    if cache is None:
        return [], []
    if hasattr(cache, "self_tensors"):
        return cache.self_tensors(), cache.cross_tensors()
    own = getattr(cache, "self_attention_cache", cache)
    cross = getattr(cache, "cross_attention_cache", None)

    def layers(each: Any) -> list[torch.Tensor]:
        found = []
        for layer in getattr(each, "layers", []) if each is not None else []:
            for name in ("keys", "values"):
                tensor = getattr(layer, name, None)
                if isinstance(tensor, torch.Tensor) and tensor.numel():
                    found.append(tensor)
        return found

    return layers(own), layers(cross)


@dataclass(frozen=True)
class KVCacheFigures:
    bytes: int
    tokens: int  # tokens per sequence held by the self-attention cache (the longest layer)
    formula: str


def kv_cache(cache: Any) -> KVCacheFigures | None:
    """The cache's bytes and how they are made: 2 x layers x KV heads x head dim x tokens x batch x element size."""
    own, cross = cache_tensors(cache)
    if not own:
        return None
    keys = own[0::2]
    tokens = max(t.shape[2] for t in keys)
    total = sum(t.numel() * t.element_size() for t in [*own, *cross])
    first = keys[0]
    batch, heads, _, head_dim = first.shape
    windows = sorted({t.shape[2] for t in keys} - {tokens})
    formula = (
        f"2 (K and V) x {len(keys)} layers x {heads} KV heads x {head_dim} x {tokens:,} tokens x batch {batch} x "
        f"{first.element_size()} bytes"
    )
    if windows:
        formula += f" (sliding-window layers keep {', '.join(f'{w:,}' for w in windows)} tokens)"
    if cross:
        cross_bytes = sum(t.numel() * t.element_size() for t in cross)
        formula += f", plus {format_bytes(cross_bytes)} of cross-attention keys and values over the source"
    return KVCacheFigures(total, tokens, f"{formula} = {format_bytes(total)}")
