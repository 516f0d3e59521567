"""Output sizes of sliding windows (convolution, pooling), the one rule shape checks, formulas and summaries use.

PyTorch computes, per spatial axis (``pooling_output_shape`` in ATen)::

    out = floor((size + 2*padding - dilation*(kernel - 1) - 1 + (stride - 1 if ceil_mode)) / stride) + 1
    if ceil_mode and (out - 1)*stride >= size + padding: out -= 1

The second line is the rule that the last window must start inside the input or
its left padding; without it ``ceil_mode`` would count a window that sees only padding.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


def window_output(size: int, kernel: int, stride: int, padding: int = 0, dilation: int = 1, ceil: bool = False) -> int:
    """Output length along one axis; below 1 when the window does not fit."""
    reach = dilation * (kernel - 1) + 1
    numerator = size + 2 * padding - reach
    if numerator < 0:
        return numerator // stride + 1  # <= 0: does not fit
    out = (numerator + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def as_tuple(value: int | tuple[int, ...] | list[int], dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value,) * dims


@dataclass(frozen=True)
class Window:
    """A convolution's or pooling layer's window, per spatial axis."""

    dims: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil: bool = False

    def output(self, sizes: list[int] | tuple[int, ...]) -> list[int]:
        return [
            window_output(n, k, s, p, d, self.ceil)
            for n, k, s, p, d in zip(sizes, self.kernel, self.stride, self.padding, self.dilation, strict=True)
        ]


_POOL_DIMS = {"1d": 1, "2d": 2, "3d": 3}


def pool_window(m: nn.Module) -> Window:
    """A pooling layer's window: the stride is the kernel when unset."""
    dims = _POOL_DIMS[type(m).__name__[-2:].lower()]
    return Window(
        dims,
        as_tuple(m.kernel_size, dims),
        as_tuple(m.stride if m.stride else m.kernel_size, dims),
        as_tuple(m.padding, dims),
        as_tuple(getattr(m, "dilation", 1), dims),
        bool(getattr(m, "ceil_mode", False)),
    )


def conv_window(m: nn.Module) -> Window | None:
    """A convolution's window; None for string padding ('same', 'valid')."""
    if not isinstance(m.padding, tuple):
        return None
    dims = len(m.kernel_size)
    return Window(dims, tuple(m.kernel_size), tuple(m.stride), tuple(m.padding), tuple(m.dilation))
