"""Labs: the course's worked examples, computed by PyTorch on the student's own numbers.

Each lab takes a small pydantic input whose defaults are an example (the notes' own
where they give one), computes every intermediate value with PyTorch in float64,
and returns them with the formula each came from (``steps``), the checks against
PyTorch's own modules, and, where the notes' figures differ, the erratum (citing
the notes' section, and saying so when the notes only use another convention).
The labs live by theme: ``layers.py``, ``training.py``, ``sequences.py``, ``quiz.py``.
"""

from __future__ import annotations

import functools
from typing import Any

from ..errors import InputError
from .base import Erratum, Lab, LabStep, as_text_when_not_finite
from .layers import (
    BatchNormInput,
    ConvolutionInput,
    DropoutInput,
    PoolingInput,
    batchnorm_lab,
    convolution_lab,
    dropout_lab,
    pooling_lab,
)
from .quiz import LayersInput, memory_lab, parameters_lab
from .sequences import AttentionInput, BpeInput, PositionalInput, attention_lab, bpe_lab, positional_encoding_lab
from .training import BackpropInput, SoftmaxInput, backprop_lab, softmax_lab

NOTES = "notes"
LAYERSCOPE = "layerscope"
LABS: dict[str, Lab] = {
    lab.name: lab
    for lab in (
        Lab(
            "pooling",
            "Max and average pooling",
            "4.2",
            PoolingInput,
            pooling_lab,
            ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d"),
            NOTES,
            "the notes' MaxPool2d(2, 2) example (section 4.2)",
        ),
        Lab(
            "convolution",
            "Convolution",
            "4.1",
            ConvolutionInput,
            convolution_lab,
            ("Conv1d", "Conv2d", "Conv3d"),
            LAYERSCOPE,
            "the notes' 6 x 6 pooling matrix with a vertical-edge filter chosen for Layerscope",
        ),
        Lab(
            "softmax",
            "Softmax and cross-entropy",
            "6.2-6.3",
            SoftmaxInput,
            softmax_lab,
            ("Softmax", "LogSoftmax"),
            LAYERSCOPE,
            "logits (2, 1, 0.1), a common textbook example (the notes give the formulas, no numbers)",
        ),
        Lab(
            "backprop",
            "Backpropagation",
            "3",
            BackpropInput,
            backprop_lab,
            (),
            LAYERSCOPE,
            "the 2-2-1 network of Matt Mazur's well-known step-by-step backpropagation example",
        ),
        Lab(
            "dropout",
            "Dropout",
            "4.4",
            DropoutInput,
            dropout_lab,
            ("Dropout", "Dropout1d", "Dropout2d"),
            NOTES,
            "the notes' dropout example: x = (2, 8, -3, 11, 5), mask (1, 0, 1, 0, 1) (section 4.4)",
        ),
        Lab(
            "batchnorm",
            "Batch normalisation",
            "5",
            BatchNormInput,
            batchnorm_lab,
            ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"),
            LAYERSCOPE,
            "a batch of four samples and three features written for Layerscope",
        ),
        Lab(
            "bpe",
            "Byte-pair encoding",
            "8.1",
            BpeInput,
            bpe_lab,
            ("TokenEmbedding",),
            LAYERSCOPE,
            "the word counts of Sennrich et al.'s BPE paper (low, lower, newest, widest)",
        ),
        Lab(
            "attention",
            "Attention",
            "8.2",
            AttentionInput,
            attention_lab,
            ("MultiHeadAttention",),
            LAYERSCOPE,
            "small query, key and value matrices written for Layerscope",
        ),
        Lab(
            "positional-encoding",
            "Positional encoding",
            "8.3",
            PositionalInput,
            positional_encoding_lab,
            ("SinusoidalPositionalEncoding",),
            LAYERSCOPE,
            "10 positions of a 16-wide encoding (the notes give the formula)",
        ),
        Lab(
            "parameters",
            "Counting parameters (quiz 1)",
            "9.1",
            LayersInput,
            parameters_lab,
            ("Linear",),
            NOTES,
            "the quiz's network 10 -> 200 -> 100 -> 1 (section 9.1)",
        ),
        Lab(
            "memory",
            "Memory of a forward and a training step (quiz 1)",
            "9.1",
            LayersInput,
            memory_lab,
            (),
            LAYERSCOPE,
            "the quiz's network with a batch of 32 in float32 chosen for Layerscope (the notes' memory formula has "
            "no numbers)",
        ),
    )
}


@functools.cache
def describe_labs() -> list[dict[str, Any]]:
    """Every lab's description (input schema, the notes' example): fixed, so built once."""
    return [lab.describe() for lab in LABS.values()]


def run_lab(name: str, values: dict[str, Any] | None) -> dict[str, Any]:
    """Compute lab ``name`` from the student's values (none: the notes' example)."""
    from pydantic import ValidationError

    lab = LABS.get(name)
    if lab is None:
        raise InputError(f"no lab {name!r}; the labs are {', '.join(LABS)}", "name")
    try:
        body = lab.input_cls.model_validate(values or {})
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        cause = (first.get("ctx") or {}).get("error")
        raise InputError(f"lab {name}: {field}: {cause or first['msg']}", field) from None
    result = lab.compute(body)
    steps = [s.model_dump() if isinstance(s, LabStep) else s for s in result.pop("steps", [])]
    on_example = body == lab.input_cls()  # the defaults: the example the lab opens with
    errata = [
        e.model_dump() if isinstance(e, Erratum) else e
        for e in result.pop("errata", [])
        if on_example or not getattr(e, "example", False)  # an erratum about the notes' numbers needs those numbers
    ]
    answer, overflowed = as_text_when_not_finite(
        {
            "lab": name,
            "title": lab.title,
            "section": lab.section,
            "example": lab.example if on_example else "yours",
            "inputs": body.model_dump(mode="json"),
            **result,
            "steps": steps,
            "errata": errata,
            "checks": result.get("checks", []),
            "notes": result.get("notes", []),
        }
    )
    if overflowed:
        answer["notes"].append(
            "Some values are not finite numbers in float64 (they overflowed, or a softmax saw only -inf): they are "
            'written as text, "inf", "-inf" or "nan".'
        )
    return answer
