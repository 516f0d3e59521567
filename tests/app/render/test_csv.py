"""CSV renderings: every row of the report, columns that add up to its totals."""

from __future__ import annotations

import csv
import io

from app.engine import estimate_memory, summarize
from app.render.csv import COMPARE_COLUMNS, memory_csv, summary_csv


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


def test_compare_rows_carry_the_configuration_and_memory(client) -> None:
    body = {
        "selections": [{"architecture": "mlp"}, {"architecture": "resnet", "config": {"depth": 18}}],
        "optimizer": "sgd",
        "precision": "bf16",
    }
    rows = list(csv.DictReader(io.StringIO(client.post("/api/compare?format=csv", json=body).text)))
    report = client.post("/api/compare", json=body).json()["entries"]
    assert list(rows[0]) == COMPARE_COLUMNS
    assert rows[1]["config"] == '{"depth": 18}' and rows[1]["architecture"] == "resnet"
    assert rows[1]["precision"] == "bf16" and rows[1]["optimizer"] == "sgd" and rows[1]["mode"] == "train"
    for row, entry in zip(rows, report, strict=True):
        assert int(row["params"]) == entry["totals"]["params"]
        assert int(row["training_peak_bytes"]) == entry["training_peak_bytes"] == entry["step_peak_bytes"]
    assert int(rows[1]["params"]) == 11_689_512  # ResNet-18, as torchvision publishes it
