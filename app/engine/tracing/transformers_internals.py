"""The private transformers functions a fake trace must answer the way a real run would, in one place.

transformers decides some things by reading a tensor's values: whether an attention
mask pads anything. With no padding, ``sdpa_mask`` skips building a (B, 1, T, T) mask
and lets SDPA use its causal kernel; with padding, it builds the mask. On fake
tensors it cannot read the values, so it always builds the mask, and the trace then
takes another kernel than the real run (8% more memory on a small Llama at 256
tokens). ``padding_as_given`` answers those checks with what the caller's mask holds.
When transformers moves these functions, this is the only module to change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

# The forward arguments that carry padding: 1 keeps a token, 0 pads it.
MASK_ARGUMENTS = ("attention_mask", "decoder_attention_mask")


def _is_fake(tensor: Any) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(tensor, FakeTensor) or (isinstance(tensor, torch.Tensor) and tensor.device.type == "meta")


def pads_nothing(arguments: dict[str, Any]) -> bool:
    """Whether the masks among a forward's keyword arguments pad nothing. A real mask is read; a mask given by
    shape only (meta) is taken to pad nothing, as every sequence of a packed training batch is full."""
    for name in MASK_ARGUMENTS:
        mask = arguments.get(name)
        if isinstance(mask, torch.Tensor) and not _is_fake(mask) and not bool((mask != 0).all()):
            return False
    return True


@contextlib.contextmanager
def padding_as_given(no_padding: bool) -> Iterator[None]:
    """While tracing on fake tensors, transformers' mask shortcuts decide as they would on the real mask.

    With ``no_padding`` a fake padding mask is handled as a mask of ones (the shortcut applies, exactly as
    ``padding_mask is None`` would); without it, as now (the mask is built, as a real padded mask is).
    """
    try:
        from transformers import masking_utils
    except ImportError:  # pragma: no cover - transformers is a dependency
        yield
        return
    if not no_padding:
        yield
        return
    originals: dict[str, Callable[..., Any]] = {}
    for name in ("_ignore_causal_mask_sdpa", "_ignore_bidirectional_mask_sdpa"):
        original = getattr(masking_utils, name, None)
        if original is None:
            continue
        originals[name] = original

        def answered(padding_mask: Any, *args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            return _original(None if _is_fake(padding_mask) else padding_mask, *args, **kwargs)

        setattr(masking_utils, name, answered)
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(masking_utils, name, original)
