"""One window rule for convolution and pooling sizes, checked against PyTorch's own output shapes."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from app.engine.explain import explain
from app.engine.tracing.geometry import conv_window, pool_window, window_output

CASES = list(itertools.product([5, 6, 7, 13], [2, 3], [1, 2, 3], [0, 1], [1, 2], [False, True]))


@pytest.mark.parametrize(("size", "kernel", "stride", "padding", "dilation", "ceil"), CASES)
def test_pooling_sizes_equal_torch(
    size: int, kernel: int, stride: int, padding: int, dilation: int, ceil: bool
) -> None:
    if padding > kernel // 2:
        pytest.skip("torch refuses padding over half the kernel")
    pool = nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil)
    try:
        expected = pool(torch.zeros(1, 1, size, size)).shape[-1]
    except RuntimeError:
        expected = 0  # "output size is too small"
    ours = window_output(size, kernel, stride, padding, dilation, ceil)
    assert max(ours, 0) == expected
    assert pool_window(pool).output([size, size]) == [ours, ours]


@pytest.mark.parametrize(("size", "kernel", "stride", "padding", "dilation"), [c[:5] for c in CASES if not c[5]])
def test_convolution_sizes_equal_torch(size: int, kernel: int, stride: int, padding: int, dilation: int) -> None:
    conv = nn.Conv1d(1, 1, kernel, stride, padding, dilation)
    reach = dilation * (kernel - 1) + 1
    if size + 2 * padding < reach:
        pytest.skip("does not fit")
    assert conv_window(conv).output([size]) == [conv(torch.zeros(1, 1, size)).shape[-1]]


def test_ceil_mode_drops_a_window_that_would_start_in_the_padding() -> None:
    """The explorer used to say 4 here: PyTorch gives 3, because the 4th window would start in the padding."""
    pool = nn.MaxPool2d(kernel_size=2, stride=2, padding=1, ceil_mode=True)
    assert pool(torch.zeros(1, 1, 5, 5)).shape[-1] == 3
    lines = explain(pool, [[1, 1, 5, 5]], [1, 1, 3, 3])
    assert lines[0].endswith("PyTorch drops it, so 3")
    assert "ceil((5 + 2*1 - 2)/2) + 1 = 4" in lines[0]
