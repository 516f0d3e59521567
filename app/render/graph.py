"""The graph report as Graphviz DOT (containers as clusters) or as a plain list of the ops between modules."""

from __future__ import annotations

from ..engine.summary.graph_report import GraphNode, GraphReport
from .units import format_count


def _shape(dims: list[int] | None) -> str:
    return "x".join(str(d) for d in dims) if dims else ""


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def graph_dot(report: GraphReport) -> str:
    """DOT for `dot -Tsvg`: a box per module call, a rounded box per op, a cluster per container."""
    children: dict[str | None, list[GraphNode]] = {}
    for node in report.nodes:
        children.setdefault(node.parent, []).append(node)
    lines = [f"digraph {_quote(report.model_class)} {{", "  rankdir=TB;", '  node [fontname="monospace", fontsize=10];']

    def emit(parent: str | None, indent: str) -> None:
        for node in children.get(parent, []):
            if node.kind == "module" and not node.leaf:
                if node.parent is None:  # the root: everything inside it, without a frame
                    emit(node.id, indent)
                    continue
                lines.append(f"{indent}subgraph cluster_{node.id} {{")
                lines.append(f"{indent}  label={_quote(f'{node.path} ({node.type})')}; style=dashed;")
                emit(node.id, indent + "  ")
                lines.append(f"{indent}}}")
                continue
            shape = _shape(node.output_shape)
            if node.kind == "module":
                label = f"{node.path}\\n{node.type}\\n{shape}"
            else:
                label = f"{node.type if node.kind == 'op' else node.path}\\n{shape}"
            style = {"op": "shape=box, style=rounded", "module": "shape=box"}.get(node.kind, "shape=ellipse")
            lines.append(f'{indent}{node.id} [label="{label}", {style}];')

    emit(None, "  ")
    for edge in report.edges:
        lines.append(f'  {edge.source} -> {edge.target} [label="{_shape(edge.shape)}", fontsize=8];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def graph_text(report: GraphReport) -> str:
    """Counts, then each op that joins, splits or reshapes data, with what flows into it."""
    by_id = {node.id: node for node in report.nodes}
    ops = [node for node in report.nodes if node.kind == "op"]
    modules = sum(1 for node in report.nodes if node.kind == "module")
    lines = [
        f"{report.model_class}: {format_count(modules)} module calls, {format_count(len(ops))} ops between them, "
        f"{format_count(len(report.edges))} tensors"
    ]
    for op in ops:
        sources = [by_id[e.source] for e in report.edges if e.target == op.id]
        inputs = ", ".join(f"{s.path or s.type} {_shape(s.output_shape)}" for s in sources)
        lines.append(f"  {op.path or '(top)'}: {op.type}({inputs}) -> {_shape(op.output_shape)}")
    return "\n".join(lines) + "\n"
