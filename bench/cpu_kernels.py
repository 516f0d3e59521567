"""The CPU kernels' hidden buffers, op by op: app/engine/cpu_workspace.py's rule against what PyTorch allocates.

Some CPU kernels allocate and free buffers inside one aten op (oneDNN's blocked
layouts and scratchpads, max pooling's indices), which no dispatch-level tracker
sees. For each op below this runs it for real under the profiler and measures the
bytes live inside the op beyond its inputs and outputs, beside the rule's figure.

    .venv/bin/python bench/cpu_kernels.py [--only conv] [--mismatches]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine.tracing.cpu_workspace import op_workspace
from app.engine.tracing.torch_internals import kineto_memory_events
from bench._common import machine, markdown_table

aten = torch.ops.aten
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def hidden_bytes(run) -> tuple[int, object]:
    """Most bytes live inside ``run()`` beyond what it returns (and what existed before it)."""
    run()  # warm: oneDNN builds its primitives (and caches) on the first call
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = run()
    live = peak = 0
    for _, nbytes, device in kineto_memory_events(prof):
        if device == "cpu":
            live += nbytes
            peak = max(peak, live)
    outputs = [t for t in (out if isinstance(out, tuple) else (out,)) if isinstance(t, torch.Tensor)]
    kept = sum(t.untyped_storage().nbytes() for t in outputs)
    return peak - kept, out


def conv_cases(quick: bool) -> list[tuple]:
    shapes = [
        # (C_in, C_out, kernel, stride, padding, size, groups)
        (3, 64, 7, 2, 3, 56, 1),
        (64, 64, 3, 1, 1, 28, 1),
        (64, 128, 3, 2, 1, 28, 1),
        (64, 128, 1, 2, 0, 28, 1),
        (64, 256, 1, 1, 0, 28, 1),
        (256, 64, 1, 1, 0, 14, 1),
        (128, 512, 1, 2, 0, 14, 1),
        (512, 512, 3, 1, 1, 7, 1),
        (96, 96, 7, 1, 3, 28, 96),  # depthwise 7x7 (ConvNeXt)
        (32, 32, 3, 1, 1, 28, 32),  # depthwise 3x3 (MobileNet)
        (16, 48, 5, 1, 2, 14, 1),
    ]
    batches = (1, 4) if quick else (1, 2, 4, 16)
    return [(*s, b, d) for s, b, d in itertools.product(shapes, batches, DTYPES)]


def run_conv(c_in, c_out, k, s, p, size, groups, batch, dtype_name, mode):
    dtype = DTYPES[dtype_name]
    torch.manual_seed(0)
    x = torch.randn(batch, c_in, size, size, dtype=dtype)
    w = torch.randn(c_out, c_in // groups, k, k, dtype=dtype)
    bias = torch.randn(c_out, dtype=dtype)
    if mode == "forward (inference)":
        func, args = aten.conv2d.default, (x, w, bias, [s, s], [p, p], [1, 1], groups)

        def run():
            with torch.inference_mode():
                return func(*args)
    elif mode == "forward (training)":
        func, args = aten.convolution.default, (x, w, bias, [s, s], [p, p], [1, 1], False, [0, 0], groups)

        def run():
            return func(*args)
    else:
        y = aten.convolution.default(x, w, bias, [s, s], [p, p], [1, 1], False, [0, 0], groups)
        grad = torch.randn_like(y)
        mask = [True, True, True]
        func = aten.convolution_backward.default
        args = (grad, x, w, [c_out], [s, s], [p, p], [1, 1], False, [0, 0], groups, mask)

        def run():
            return func(*args)

    measured, out = hidden_bytes(run)
    return measured, op_workspace(func, args, {}, out)


def run_pool(batch, dtype_name):
    x = torch.randn(batch, 64, 56, 56, dtype=DTYPES[dtype_name])

    def run():
        with torch.inference_mode():
            return aten.max_pool2d.default(x, [3, 3], [2, 2], [1, 1])

    measured, out = hidden_bytes(run)
    return measured, op_workspace(aten.max_pool2d.default, (x, [3, 3], [2, 2], [1, 1]), {}, out)


def run_rnn(cls_name: str, dtype_name: str, mode: str):
    """A two-layer recurrent net, run whole under inference_mode, or one LSTM layer's backward in training."""
    cls = {"GRU": torch.nn.GRU, "LSTM": torch.nn.LSTM, "RNN": torch.nn.RNN}[cls_name]
    model = cls(128, 256, num_layers=2, batch_first=True).to(DTYPES[dtype_name])
    x = torch.randn(4, 64, 128, dtype=DTYPES[dtype_name])
    if mode == "forward (inference)":
        func = {"GRU": aten.gru.input, "LSTM": aten.lstm.input, "RNN": aten.rnn_tanh.input}[cls_name]

        def run():
            with torch.inference_mode():
                return model(x)
    else:
        func = aten.mkldnn_rnn_layer_backward.default
        x.requires_grad_(True)
        y = model(x)[0]
        grad = torch.randn_like(y)

        def run():
            y.backward(grad, retain_graph=True)

    from app.engine.tracing.torch_internals import OpObserver

    run()
    calls = []
    with OpObserver(lambda f, a, k, o: calls.append((a, k, o)) if f is func else None):
        run()
    args, kwargs, out = calls[-1]
    run()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    start, end = [
        (e.start_ns(), e.end_ns()) for e in prof.profiler.kineto_results.events() if e.name() == str(func._schema.name)
    ][-1]
    live = peak = 0
    for time_ns, nbytes, device in kineto_memory_events(prof):
        if device == "cpu" and start <= time_ns <= end:
            live += nbytes
            peak = max(peak, live)
    outputs = [t for t in (out if isinstance(out, tuple | list) else (out,)) if isinstance(t, torch.Tensor)]
    outputs += [t for item in outputs if isinstance(item, tuple) for t in item]
    measured = peak - sum(t.untyped_storage().nbytes() for t in outputs if isinstance(t, torch.Tensor))
    return measured, op_workspace(func, args, kwargs, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="conv, rnn or pool")
    parser.add_argument("--mismatches", action="store_true", help="list only the ops where the rule is off")
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes")
    args = parser.parse_args()
    rows = []
    total = exact = 0
    modes = ("forward (inference)", "forward (training)", "backward")
    if args.only in (None, "conv"):
        for case, mode in itertools.product(conv_cases(args.quick), modes):
            *shape, batch, dtype_name = case
            measured, ours = run_conv(*shape, batch, dtype_name, mode)
            total += 1
            exact += measured == ours
            if not args.mismatches or measured != ours:
                c_in, c_out, k, s, _, size, groups = shape
                label = f"conv {c_in}->{c_out} {k}x{k}/{s} on {size}x{size}" + (
                    f", groups {groups}" if groups > 1 else ""
                )
                rows.append(
                    [label, str(batch), dtype_name, mode, f"{measured:,}", f"{ours:,}", f"{ours - measured:+,}"]
                )
    if args.only in (None, "rnn"):
        for cls_name, dtype_name, mode in [
            *itertools.product(("GRU", "RNN", "LSTM"), ("fp32", "bf16"), ("forward (inference)",)),
            *itertools.product(("LSTM",), ("fp32", "bf16"), ("backward",)),
        ]:
            measured, ours = run_rnn(cls_name, dtype_name, mode)
            total += 1
            exact += measured == ours
            if not args.mismatches or measured != ours:
                label = f"{cls_name} 2 layers 128->256, 64 steps" + (", one layer's" if mode == "backward" else "")
                rows.append([label, "4", dtype_name, mode, f"{measured:,}", f"{ours:,}", f"{ours - measured:+,}"])
    if args.only in (None, "pool"):
        for batch, dtype_name in itertools.product((1, 8), DTYPES):
            measured, ours = run_pool(batch, dtype_name)
            total += 1
            exact += measured == ours
            if not args.mismatches or measured != ours:
                rows.append(
                    [
                        "max_pool2d 3x3/2 on 64x56x56",
                        str(batch),
                        dtype_name,
                        "forward (inference)",
                        f"{measured:,}",
                        f"{ours:,}",
                        f"{ours - measured:+,}",
                    ]
                )
    print(f"Machine: {machine()}\n")
    print(markdown_table(["Op", "Batch", "dtype", "Pass", "Measured hidden B", "Rule B", "Rule - measured"], rows))
    print(f"\n{exact} of {total} ops exact to the byte")


if __name__ == "__main__":
    main()
