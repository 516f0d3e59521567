"""Terminal tables: a tree column, totals that match the report."""

from __future__ import annotations

from app.engine import estimate_memory, summarize
from app.render.table import memory_table, summary_table


def test_summary_table_tree_and_depth() -> None:
    report = summarize("resnet", batch_size=1)
    text = summary_table(report, max_depth=1)
    assert "├─ conv1 (Conv2d)" in text and "└─ fc (Linear)" in text
    assert "layer1.0" not in text  # depth 1 only
    assert "Total params:          11,689,512" in text


def test_memory_table_parts() -> None:
    report = estimate_memory("lenet5", batch_size=2)
    text = memory_table(report)
    assert text.count("%") >= 7 and "Textbook estimate" in text and "Peak memory:" in text
