"""The lists of choices live in one table; precision and dtype decide each other and may not contradict."""

from __future__ import annotations

import pytest
import torch

from app.engine import InputError, estimate_memory
from app.engine.choices import OPTIMIZERS, PRECISIONS, describe_choices, resolve_precision


@pytest.mark.parametrize(
    ("precision", "dtype", "expected"),
    [
        (None, None, "fp32"),
        (None, "bfloat16", "bf16"),
        (None, torch.float16, "fp16"),
        ("amp-bf16", None, "amp-bf16"),
        ("amp-bf16", "float32", "amp-bf16"),
        ("bf16", "bfloat16", "bf16"),
        ("fp64", None, "fp64"),
    ],
)
def test_precision_from_dtype_or_given(precision: str | None, dtype, expected: str) -> None:
    assert resolve_precision(precision, dtype).name == expected


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", "bfloat16"), ("amp-bf16", "bfloat16"), ("bf16", "float16")])
def test_contradictions_are_refused(precision: str, dtype: str) -> None:
    with pytest.raises(InputError) as info:
        resolve_precision(precision, dtype)
    assert info.value.field == "dtype" and "contradicts" in str(info.value)


def test_the_report_says_the_precision_its_figures_are_for() -> None:
    """bfloat16 parameters are reported as bf16, not fp32 (the old dtype + precision controls disagreed)."""
    report = estimate_memory("mlp", dtype="bfloat16", mode="inference")
    assert (report.precision, report.dtype) == ("bf16", "bfloat16")
    assert report.breakdown.weights == 22_401 * 2


def test_described_choices_follow_the_tables() -> None:
    described = describe_choices()
    assert [o["id"] for o in described["optimizers"]] == list(OPTIMIZERS)
    assert [p["id"] for p in described["precisions"]] == list(PRECISIONS)
    assert {o["id"]: o["state_copies"] for o in described["optimizers"]} == {
        "sgd": 0,
        "sgd-momentum": 1,
        "adam": 2,
        "adamw": 2,
        "adamw-8bit": 2,  # two moments, at one byte each: the textbook formula counts copies, the trace bytes
        "paged-adamw-8bit": 2,
        "adafactor": 0,  # factored: row and column sums, not a parameter-sized copy
    }
    assert OPTIMIZERS["sgd-momentum"].build([torch.nn.Parameter(torch.zeros(1))]).defaults["momentum"] == 0.9
