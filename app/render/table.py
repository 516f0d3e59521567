"""Plain-text tables for the CLI: a tree column, aligned numbers, thousands separators."""

from __future__ import annotations

from ..engine.live.attention_maps import AttentionReport
from ..engine.live.runs import FeatureMapsReport
from ..engine.memory.report import MemoryReport
from ..engine.summary.report import LayerRow, SummaryReport
from .units import format_bytes, format_count, format_flops, format_shape


def _tree_prefixes(rows: list[LayerRow]) -> list[str]:
    """'├─ ', '│  └─ ' ... from each row's position among its siblings."""
    last_child: dict[str | None, str] = {}
    for row in rows:
        last_child[row.parent] = row.path
    prefixes = []
    open_levels: list[bool] = []  # per depth: does the ancestor at that depth have siblings after it?
    for row in rows:
        if row.depth == 0:
            prefixes.append("")
            open_levels = []
            continue
        is_last = last_child.get(row.parent) == row.path
        del open_levels[row.depth - 1 :]
        stem = "".join("│  " if more else "   " for more in open_levels)
        prefixes.append(stem + ("└─ " if is_last else "├─ "))
        open_levels.append(not is_last)
    return prefixes


def _render(headers: list[str], body: list[list[str]], right: set[int]) -> str:
    widths = [max([len(headers[i]), *(len(r[i]) for r in body)]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(cells).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([line(headers), rule, *(line(r) for r in body)])


def summary_table(report: SummaryReport, max_depth: int | None = None) -> str:
    """The layer tree with shapes, parameters, FLOPs and output sizes, then the totals."""
    total = report.totals.params or 1
    rows = [r for r in report.layers if max_depth is None or r.depth <= max_depth]
    prefixes = _tree_prefixes(rows)
    body = []
    for row, prefix in zip(rows, prefixes, strict=True):
        label = f"{prefix}{row.name} ({row.type})" if row.depth else f"{row.type}"
        params = row.params_inclusive
        body.append(
            [
                label,
                format_shape(row.output_shape) if row.calls else ("(unused)" if row.is_leaf else "-"),
                format_count(params) if params else "-",
                f"{100 * params / total:.1f}%" if params else "",
                format_count(row.macs_inclusive) if row.macs_inclusive else "-",
                format_bytes(row.output_bytes) if row.output_bytes else "-",
            ]
        )
    table = _render(["Layer", "Output shape", "Params", "% params", "MACs", "Output"], body, {2, 3, 4, 5})
    t = report.totals
    shapes = ", ".join(format_shape(s) for s in report.input_shapes)
    lines = [
        f"{report.architecture or report.model_class}: input {shapes} ({report.dtype}, batch {report.batch_size})",
        "",
        table,
        "",
        f"Total params:          {format_count(t.params)}",
        f"  trainable:           {format_count(t.trainable_params)}",
        f"  non-trainable:       {format_count(t.non_trainable_params)}",
        *(
            [f"  active per token:    {format_count(t.active_params)}  (mixture of experts: top-k experts only)"]
            if t.active_params != t.params
            else []
        ),
        f"MACs (forward):        {format_count(t.macs)}  ({format_flops(t.flops)}, FLOPs = 2 x MACs)",
        f"Parameter memory:      {format_bytes(t.param_bytes)}",
        f"Input size:            {format_bytes(t.input_bytes)}",
        f"Layer outputs (sum):   {format_bytes(t.activation_bytes)}",
        f"Output shape:          {format_shape(t.output_shape)}",
        *(f"Note: {note}" for note in report.notes if note.startswith("Mixture of experts")),
    ]
    return "\n".join(lines)


def simple_table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    return _render(headers, rows, right or set())


PHASES = {
    "forward": "in the forward pass",
    "backward": "in the backward pass",
    "optimizer": "in the optimizer step",
    "prefill": "in the prefill (the prompt's forward)",
    "decode": "in a decode step",
}


def memory_table(report: MemoryReport, top: int = 8) -> str:
    """The peak, its parts, the textbook formula beside it, and the layers that save the most."""
    what = {
        "train": f"train with {report.optimizer}",
        "generate": f"generate {report.new_tokens} tokens",
    }.get(report.mode, "inference")
    if report.gpus > 1:
        what += f", {report.sharding} over {report.gpus} devices (per device)"
    if report.tp > 1:
        what += f", tensor parallel over {report.tp} GPUs (per GPU)"
    if report.pp > 1:
        what += f", {report.pp} pipeline stages of {report.microbatches} micro-batches (the largest stage)"
    shapes = ", ".join(format_shape(s) for s in report.input_shapes)
    parts = report.breakdown.model_dump()
    peak = report.peak_bytes or 1
    lines = [
        f"{report.architecture or report.model_class}: input {shapes}, {what}, {report.precision} on {report.device}",
        "",
        f"Peak memory:  {format_bytes(report.peak_bytes)}  ({PHASES[report.phase]})",
    ]
    for name, value in parts.items():
        lines.append(f"  {name.replace('_', ' '):<17} {format_bytes(value):>12}  {100 * value / peak:5.1f}%")
    lines.append(f"Held between steps:        {format_bytes(report.persistent_bytes)}")
    if report.tp == 1 and report.pp == 1:  # a split step's rank counts neither (its report says so)
        lines += [
            f"Saved for backward (all):  {format_bytes(report.saved_activation_bytes)}",
            f"FLOPs in the step:         {format_flops(report.step_flops)}",
        ]
    for stage in report.stages or []:
        lines.append(
            f"  stage {stage.stage}: {format_bytes(stage.peak_bytes):>12}  ({stage.holds}; "
            f"{stage.in_flight_microbatches} micro-batch{'es' if stage.in_flight_microbatches > 1 else ''} in flight, "
            f"peak {PHASES[stage.phase]})"
        )
    if report.host_bytes is not None:
        lines.append(f"Host memory (offload {report.offload}): {format_bytes(report.host_bytes)} per rank, off the GPU")
    if report.kv_cache_bytes is not None:
        lines.append(f"KV cache:                  {format_bytes(report.kv_cache_bytes)}  ({report.kv_cache_formula})")
        lines.append(f"  tokens held at the peak: {report.kv_cache_tokens_at_peak:,} per sequence")
    if report.peak_without_checkpointing_bytes is not None:
        saving = report.peak_without_checkpointing_bytes - report.peak_bytes
        lines.append(
            f"Checkpointing saves:       {format_bytes(saving)}  "
            f"(peak without it: {format_bytes(report.peak_without_checkpointing_bytes)})"
        )
    if report.fits:
        fitting = [f.gpu for f in report.fits if f.fits]
        lines.append(f"Fits on:                   {', '.join(fitting) if fitting else 'none of the catalog GPUs'}")
    if report.measured_peak_bytes is not None:
        lines.append(
            f"Measured peak:             {format_bytes(report.measured_peak_bytes)}  "
            f"(error {report.error_percent:+.2f}%, {report.measure_method})"
        )
    if report.formula is not None:
        lines += ["", f"Textbook estimate ({report.formula.expression}):"]
        lines += [f"  {line}" for line in report.formula.lines]
    savers = sorted((r for r in report.layers if r.saved_bytes), key=lambda r: -r.saved_bytes)[:top]
    if savers:
        lines += ["", "Layers that save the most for backward:"]
        body = [[r.path or "(model)", r.type, format_bytes(r.saved_bytes)] for r in savers]
        lines.append(_render(["Layer", "Type", "Saved"], body, {2}))
    return "\n".join(lines)


def feature_maps_table(report: FeatureMapsReport) -> str:
    """Each layer's output: shape, channels drawn, share of zeros and range; then the top classes."""
    body = []
    for layer in report.layers:
        stats = layer.stats
        zeros = sum(s.zero_fraction for s in stats) / len(stats) if stats else 0.0
        low = min((s.min for s in stats), default=0.0)
        high = max((s.max for s in stats), default=0.0)
        body.append(
            [
                layer.path,
                layer.type,
                format_shape(layer.shape),
                f"{layer.channels_shown:,}",
                f"{100 * zeros:.0f}%",
                f"{low:.3g} .. {high:.3g}",
            ]
        )
    lines = [
        f"{report.architecture or 'model'}: {report.weights['label']} on {report.device}",
        *(f"  {step}" for step in report.preprocessing),
        "",
        _render(["Layer", "Type", "Output", "Drawn", "Zeros", "Range"], body, {3, 4}),
    ]
    if report.prediction:
        lines += ["", "Top classes (softmax):"]
        lines += [f"  {t['label']:>12}  {t['probability']:7.2%}" for t in report.prediction.top]
    return "\n".join(lines)


SHADES = " .:-=+*#%@"


def attention_table(report: AttentionReport, layer: int = 0, head: int = 0) -> str:
    """The tokens, the merges that fired, and one head's weights as a shaded grid (darker: more weight)."""
    tokens = [t.replace(" ", "_").replace("\n", "\\n") for t in report.tokens]
    lines = [
        f"{report.architecture}: {report.weights} on {report.device}",
        f"{len(tokens)} tokens: {' | '.join(tokens)}" + (" (cut)" if report.truncated else ""),
        f"merges that fired: {len(report.merges)}",
    ]
    if report.attention:
        chosen = report.attention[min(layer, len(report.attention) - 1)]
        weights = chosen.heads[min(head, len(chosen.heads) - 1)]
        lines += ["", f"{chosen.path} ({chosen.kind}), head {head}: row = query, column = key"]
        width = max(len(t) for t in tokens)
        for token, row in zip(tokens, weights, strict=False):
            top = max(row) or 1.0
            shades = "".join(SHADES[min(len(SHADES) - 1, int(v / top * (len(SHADES) - 1)))] for v in row)
            lines.append(f"  {token:>{width}} {shades}")
        lines.append(f"{len(report.attention)} attention layers in all (--json for every head's weights)")
    return "\n".join(lines)
