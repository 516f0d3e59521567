"""The graph report: nodes, edges and their hierarchy (pydantic only, so the API can read it without torch)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class GraphNode(BaseModel):
    id: str
    kind: str = Field(description="input, module, op or output.")
    path: str = Field(description="The module's path; for an op, the enclosing module's.")
    type: str = Field(description="The module's class, or the op's name.")
    parent: str | None = Field(description="The node of the module call this one runs inside (null: top level).")
    depth: int = Field(description="Nesting depth: 0 for top-level nodes.")
    leaf: bool = Field(description="False for a module with submodules: a container that can be collapsed.")
    repeated: bool = Field(False, description="One of several siblings of the same type: a repeated block.")
    output_shape: list[int] | None = None
    output_shapes: list[list[int]] = Field(default_factory=list)
    params: int = Field(0, description="Parameters, the module's submodules included (0 for ops).")
    flops: int = Field(0, description="FLOPs of this call, submodules included.")


class GraphEdge(BaseModel):
    source: str
    target: str
    shape: list[int] = Field(description="The tensor's shape, batch first.")


class GraphReport(BaseModel):
    """Nodes and edges of one forward pass, with its hierarchy (each node's ``parent``)."""

    kind: str = "graph"
    architecture: str | None
    model_class: str
    batch_size: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    collapsed_by_default: list[str] = Field(
        description="Nodes (repeated blocks) a viewer should start collapsed, so a deep model stays readable."
    )
    notes: list[str] = Field(default_factory=list)
