"""The explainer registry: which worked formulas belong to which layer, and how a block is summed up.

Explainers register by class (``explains``) or by what a module holds
(``recognizes``); ``explain`` finds the one for a module. The formulas themselves
live in ``layers.py`` (the course's layers) and ``llm.py`` (today's language models).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

Shape = list[int]
Explainer = Callable[[nn.Module, Shape | None, Shape | None], list[str]]

_EXPLAINERS: dict[type, tuple[Explainer, bool]] = {}  # class -> (explainer, wants every input shape)
_STRUCTURES: list[tuple[Callable[[nn.Module], bool], Explainer]] = []  # recognized by what a module holds


def n(value: float) -> str:
    """A number with thousands separators: 34944 -> '34,944'."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.4g}"
    return f"{int(value):,}"


def _dims(shape: Shape | None) -> str:
    return " x ".join(str(s) for s in shape) if shape else "?"


def _power(k: tuple[int, ...]) -> str:
    """Kernel volume as the course writes it: 11^2 for a square kernel, 3*5 otherwise."""
    if len(set(k)) == 1 and len(k) > 1:
        return f"{k[0]}^{len(k)}"
    return "*".join(str(x) for x in k)


def explains(*types: type, all_inputs: bool = False) -> Callable[[Explainer], Explainer]:
    """Register an explainer; with ``all_inputs`` it receives every input shape instead of the first."""

    def register(fn: Explainer) -> Explainer:
        for t in types:
            _EXPLAINERS[t] = (fn, all_inputs)
        return fn

    return register


def recognizes(predicate: Callable[[nn.Module], bool]) -> Callable[[Explainer], Explainer]:
    """Register an explainer for modules of any class that ``predicate`` recognizes by their structure."""

    def register(fn: Explainer) -> Explainer:
        _STRUCTURES.append((predicate, fn))
        return fn

    return register


_COURTESY = (TypeError, ValueError, IndexError, ZeroDivisionError, AttributeError, AssertionError)


def explain(module: nn.Module, input_shapes: list[Shape], output_shape: Shape | None) -> list[str] | None:
    """Formula lines for ``module``, or None when no formula is registered for its class (a block).

    A leaf of a class without a formula may still be recognized by its structure (an RMSNorm, a router).
    """
    for cls in type(module).__mro__:
        entry = _EXPLAINERS.get(cls)
        if entry is not None:
            fn, all_inputs = entry
            inputs = input_shapes if all_inputs else (input_shapes[0] if input_shapes else None)
            try:
                return fn(module, inputs, output_shape)  # type: ignore[arg-type]
            except _COURTESY:
                return []  # a formula is a courtesy; a layer used in an unusual way just gets none
    if not any(True for _ in module.children()):
        lines = explain_structure(module, input_shapes[0] if input_shapes else None, output_shape)
        return lines or None
    return None


def explain_structure(module: nn.Module, input_shape: Shape | None, output_shape: Shape | None) -> list[str]:
    """Lines from the first structural explainer that recognizes ``module`` (none: [])."""
    for predicate, fn in _STRUCTURES:
        try:
            if predicate(module):
                return fn(module, input_shape, output_shape)
        except _COURTESY:
            return []
    return []


def explain_block(
    module: nn.Module, children: list[tuple[str, int]], input_shape: Shape | None, output_shape: Shape | None
) -> list[str]:
    """A block: its docstring's first line, and the sum its parameters come from.

    ``children`` are (name, parameters) of its direct submodules, tied weights counted once.
    """
    lines = []
    doc = (type(module).__doc__ or "").strip().splitlines()
    if doc and type(module).__module__.startswith("models"):
        lines.append(doc[0])
    with_params = [(name, count) for name, count in children if count]
    if len(with_params) > 1:
        total = sum(count for _, count in with_params)
        terms = " + ".join(n(count) for _, count in with_params[:8])
        if len(with_params) > 8:
            terms += f" + ... ({len(with_params) - 8} more)"
        lines.append(f"params = {terms} = {n(total)} (its {len(with_params)} sub-layers with parameters)")
    if input_shape and output_shape and input_shape != output_shape:
        lines.append(f"shape: {_dims(input_shape)} -> {_dims(output_shape)}")
    return lines
