"""The summary: per-layer shapes, parameters and FLOPs (``summarize``), and the same trace as a graph
(``trace_graph``), as typed reports (``report.py``, ``graph_report.py``)."""

from .graph_report import GraphEdge, GraphNode, GraphReport
from .report import LayerRow, SummaryReport, Totals
from .summarizer import summarize, trace_graph

__all__ = ["GraphEdge", "GraphNode", "GraphReport", "LayerRow", "SummaryReport", "Totals", "summarize", "trace_graph"]
