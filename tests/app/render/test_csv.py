"""CSV renderings: every row of the report, columns that add up to its totals."""

from __future__ import annotations

import csv
import io

from app.engine import estimate_memory, summarize
from app.render.csv import COMPARE_COLUMNS, compare_csv, memory_csv, summary_csv


def test_summary_rows_add_up() -> None:
    report = summarize("lenet5", batch_size=3)
    rows = list(csv.DictReader(io.StringIO(summary_csv(report))))
    assert len(rows) == len(report.layers)
    assert sum(int(r["params"]) for r in rows) == 61_706
    assert sum(int(r["flops"]) for r in rows) == report.totals.flops
    assert rows[1]["output_shape"] == "3x6x28x28"


def test_memory_rows_are_the_saved_bytes() -> None:
    report = estimate_memory("mlp", batch_size=4, optimizer="sgd")
    rows = list(csv.DictReader(io.StringIO(memory_csv(report))))
    assert sum(int(r["saved_bytes"]) for r in rows) == report.saved_activation_bytes


def test_compare_columns() -> None:
    entries = [
        {
            "label": "mlp",
            "totals": {"params": 1, "macs": 2, "flops": 4, "param_bytes": 4},
            "inference_peak_bytes": 10,
            "training_peak_bytes": 20,
        }
    ]
    lines = compare_csv(entries).splitlines()
    assert lines[0].split(",") == COMPARE_COLUMNS and lines[1] == "mlp,1,2,4,4,10,20"
