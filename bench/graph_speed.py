"""trace_graph() beside summarize() (the graph rides on the same trace) and beside torch.fx's symbolic trace.

For each model: the graph's size, the median time of a summary and of a graph (models reused from the meta
pool, as in a running service), and whether ``torch.fx.symbolic_trace`` can trace the same model at all
(the usual way graph tools get a graph; it fails on Python control flow that depends on inputs).

    .venv/bin/python bench/graph_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models
from app.engine import summarize, trace_graph
from bench._common import machine, markdown_table, median_seconds

CASES = [
    ("resnet", {"depth": 18}, "ResNet-18"),
    ("resnet", {"depth": 50}, "ResNet-50"),
    ("transformer", None, "Transformer base"),
    ("vit", None, "ViT-B/16"),
    ("huggingface", {"preset": "gpt2"}, "GPT-2 (Hugging Face)"),
    ("huggingface", {"preset": "llama-3.1-8b"}, "Llama 3.1 8B (Hugging Face)"),
]


def fx_traces(name: str, config: dict | None) -> str:
    with torch.device("meta"):
        model = models.build_model(name, config)
    try:
        graph = torch.fx.symbolic_trace(model)
    except Exception as exc:  # what a user of an fx-based tool would see
        return f"fails: {type(exc).__name__}"
    return f"{len(graph.graph.nodes):,} nodes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for name, config, label in CASES:
        report = trace_graph(name, config)
        ops = sum(1 for n in report.nodes if n.kind == "op")
        summary_s = median_seconds(lambda n=name, c=config: summarize(n, c), args.repeats)
        graph_s = median_seconds(lambda n=name, c=config: trace_graph(n, c), args.repeats)
        rows.append(
            [
                label,
                f"{len(report.nodes):,}",
                f"{ops:,}",
                f"{len(report.edges):,}",
                f"{len(report.collapsed_by_default)}",
                f"{summary_s * 1e3:,.1f} ms",
                f"{graph_s * 1e3:,.1f} ms",
                fx_traces(name, config),
            ]
        )
    print(machine())
    print()
    headers = ["Model", "Nodes", "Ops", "Edges", "Start collapsed", "summarize", "trace_graph", "torch.fx"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
