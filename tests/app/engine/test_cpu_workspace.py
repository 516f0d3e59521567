"""The CPU kernels' hidden buffers: each rule against what PyTorch allocates inside the op, on this machine."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from app.engine.tracing.cpu_workspace import _cpu_flags, op_workspace
from app.engine.tracing.torch_internals import OpObserver, kineto_memory_events

aten = torch.ops.aten
BF16_ONEDNN = "avx512_bf16" in _cpu_flags() and "AVX512" in str(torch.backends.cpu.get_cpu_capability())


def measured_and_rule(run, op) -> tuple[int, int]:
    """(bytes live inside ``op`` beyond its outputs, the rule's figure for the same call)."""
    run()  # warm
    calls = []
    with OpObserver(lambda f, a, k, o: calls.append((a, k, o)) if f is op else None):
        run()
    args, kwargs, out = calls[-1]
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = run()
    spans = [
        (e.start_ns(), e.end_ns()) for e in prof.profiler.kineto_results.events() if e.name() == str(op._schema.name)
    ]
    start, end = spans[-1]
    live = peak = 0
    for time_ns, nbytes, device in kineto_memory_events(prof):
        if device == "cpu" and start <= time_ns <= end:
            live += nbytes
            peak = max(peak, live)
    outputs = [t for t in (out if isinstance(out, tuple | list) else (out,)) if isinstance(t, torch.Tensor)]
    del result
    return peak - sum(t.untyped_storage().nbytes() for t in outputs), op_workspace(op, args, kwargs, out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_max_pool_keeps_int64_indices_it_does_not_return(dtype) -> None:
    x = torch.randn(2, 8, 30, 30, dtype=dtype)

    def run():
        with torch.inference_mode():
            return F.max_pool2d(x, 3, 2, 1)

    measured, rule = measured_and_rule(run, aten.max_pool2d.default)
    assert measured == rule == 2 * 8 * 15 * 15 * 8


@pytest.mark.parametrize(("c_in", "c_out", "kernel", "stride"), [(16, 48, 5, 1), (8, 16, 3, 2)])
def test_float16_convolution_unfolds_the_batch_into_columns(c_in, c_out, kernel, stride) -> None:
    x = torch.randn(3, c_in, 14, 14, dtype=torch.float16)
    w = torch.randn(c_out, c_in, kernel, kernel, dtype=torch.float16)

    def run():
        with torch.inference_mode():
            return F.conv2d(x, w, None, stride, kernel // 2)

    measured, rule = measured_and_rule(run, aten.conv2d.default)
    assert measured == rule > 0


@pytest.mark.skipif(not BF16_ONEDNN, reason="oneDNN's bf16 1x1 kernel: a CPU with AVX-512 bf16")
@pytest.mark.parametrize(("c_in", "c_out", "size", "batch", "stride"), [(64, 256, 28, 1, 1), (64, 128, 28, 4, 2)])
def test_bf16_one_by_one_scratchpad(c_in, c_out, size, batch, stride) -> None:
    x = torch.randn(batch, c_in, size, size, dtype=torch.bfloat16)
    w = torch.randn(c_out, c_in, 1, 1, dtype=torch.bfloat16)

    def run():
        with torch.inference_mode():
            return F.conv2d(x, w, None, stride)

    measured, rule = measured_and_rule(run, aten.conv2d.default)
    assert measured == rule


@pytest.mark.parametrize(("batch", "onednn"), [(2, True), (1, False)])
def test_float32_convolution_backward(batch: int, onednn: bool) -> None:
    """oneDNN converts its blocked weight gradient beside the dense one; PyTorch's slow path unfolds columns."""
    x = torch.randn(batch, 128, 7, 7)
    w = torch.randn(128, 128, 3, 3)
    y = aten.convolution(x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    grad = torch.randn_like(y)
    args = (grad, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, True, False])

    def run():
        return aten.convolution_backward(*args)

    measured, rule = measured_and_rule(run, aten.convolution_backward.default)
    assert measured == rule
    if onednn:
        assert rule >= w.numel() * 4
    else:
        assert rule == batch * 128 * 9 * 49 * 4


@pytest.mark.parametrize("cls", [torch.nn.GRU, torch.nn.RNN])
def test_a_recurrent_layer_run_whole(cls) -> None:
    model = cls(32, 64, num_layers=2, batch_first=True)
    x = torch.randn(4, 20, 32)

    def run():
        with torch.inference_mode():
            return model(x)

    op = aten.gru.input if cls is torch.nn.GRU else aten.rnn_tanh.input
    measured, rule = measured_and_rule(run, op)
    assert abs(rule - measured) <= 4 * 4 * 64 * 4  # within a few hidden states (4 x batch x hidden floats)


def test_an_lstm_run_whole_by_onednn() -> None:
    model = torch.nn.LSTM(64, 128, num_layers=2)
    x = torch.randn(32, 4, 64)

    def run():
        with torch.inference_mode():
            return model(x)

    measured, rule = measured_and_rule(run, aten.lstm.input)
    assert abs(rule - measured) / measured < 0.05  # the rule's small constant terms weigh most at this size
