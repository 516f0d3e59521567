"""Activation checkpointing: each repeated block recomputed in backward instead of keeping its activations.

``repeated_blocks`` finds a model's repeated stacks (what checkpointing wraps and what
FSDP shards); ``enable_checkpointing`` wraps them: a Hugging Face model with its own
``gradient_checkpointing_enable``, any other with ``torch.utils.checkpoint``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import InputError
from ..tracing.selection import is_hugging_face


def repeated_stacks(model: nn.Module) -> list[nn.ModuleList | nn.Sequential]:
    """The model's repeated stacks: each a ModuleList or Sequential of two or more blocks (modules made of
    layers) of one class, outermost first; a stack inside a block of one already found is not counted again."""
    stacks: list[nn.ModuleList | nn.Sequential] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside or not isinstance(module, nn.ModuleList | nn.Sequential):
            continue
        children = list(module.children())
        if len(children) > 1 and len({type(m) for m in children}) == 1 and any(True for _ in children[0].children()):
            stacks.append(module)
            inside.update(id(m) for child in children for m in child.modules())
    return stacks


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks of the model's repeated stacks (``repeated_stacks``), outermost first."""
    return [block for stack in repeated_stacks(model) for block in stack.children()]


def keep_first_blocks(model: nn.Module, blocks: int) -> None:
    """Cut every repeated stack to its first ``blocks`` blocks (a shorter model of the same kind)."""
    for stack in repeated_stacks(model):
        del stack[blocks:]


def enable_checkpointing(model: nn.Module) -> int:
    """Recompute each repeated block in backward instead of keeping its activations; returns how many blocks.

    Hugging Face models use their own ``gradient_checkpointing_enable`` (non-reentrant);
    other models get ``torch.utils.checkpoint`` (non-reentrant) around each block's forward.
    """
    if is_hugging_face(model) and getattr(model, "supports_gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return sum(1 for m in model.modules() if getattr(m, "gradient_checkpointing", False)) and len(
            repeated_blocks(model)
        )
    blocks = repeated_blocks(model)
    if not blocks:
        raise InputError(
            "checkpointing recomputes repeated blocks (a ModuleList or Sequential of blocks of one kind), and this "
            "model has none",
            "checkpointing",
        )
    for block in blocks:
        block.forward = functools.partial(_checkpointed, block.forward)  # type: ignore[method-assign]
    return len(blocks)


def _checkpointed(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)
