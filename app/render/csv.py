"""CSV of a report's layer rows, for spreadsheets."""

from __future__ import annotations

import csv
import io
import json

from ..engine.memory.report import MemoryReport
from ..engine.summary.report import SummaryReport

SUMMARY_COLUMNS = [
    "path",
    "type",
    "depth",
    "calls",
    "input_shape",
    "output_shape",
    "params",
    "params_inclusive",
    "trainable_params",
    "buffers",
    "macs",
    "flops",
    "macs_inclusive",
    "flops_inclusive",
    "output_bytes",
]


def _cell(value: object) -> object:
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return "" if value is None else value


def summary_csv(report: SummaryReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for row in report.layers:
        data = row.model_dump()
        writer.writerow([_cell(data[c]) for c in SUMMARY_COLUMNS])
    return buffer.getvalue()


COMPARE_COLUMNS = [
    "label",
    "architecture",
    "config",
    "batch_size",
    "precision",
    "optimizer",
    "mode",
    "params",
    "active_params",
    "macs",
    "flops",
    "param_bytes",
    "inference_peak_bytes",
    "training_peak_bytes",
    "step_peak_bytes",
    "kv_cache_bytes",
]


def compare_csv(entries: list[dict]) -> str:
    """One row per compared selection: its configuration, totals and memory peaks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COMPARE_COLUMNS)
    for entry in entries:
        request = entry["request"]
        values = {
            **entry["totals"],
            **entry,
            "architecture": request["architecture"],
            "config": json.dumps(request.get("config") or {}, sort_keys=True),
            "batch_size": request["input"]["batch_size"],
        }
        writer.writerow(
            [values.get(column, "") if values.get(column) is not None else "" for column in COMPARE_COLUMNS]
        )
    return buffer.getvalue()


def memory_csv(report: MemoryReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "type", "saved_bytes", "output_bytes"])
    for row in report.layers:
        writer.writerow([row.path, row.type, row.saved_bytes, row.output_bytes])
    return buffer.getvalue()
