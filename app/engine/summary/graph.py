"""The model as a graph: a node per module call and per op that joins or splits data, an edge per tensor.

Recorded by ``GraphRecorder`` during the same allocation-free trace as the summary (the tracer's module
hooks, plus a ``TorchFunctionMode`` for the functional code between modules), not by ``torch.fx``
symbolic tracing, which fails on data-dependent Python in many real models.

Each tensor remembers the node that produced it (a weak map: nothing is kept alive). A leaf module's
inputs become edges into its node; ops inside a leaf module are its own business and are not looked at.
Between modules, an op becomes a node when it joins data from two producers (a residual ``add``, a
``cat``), computes attention (``matmul``, ``softmax``, ``scaled_dot_product_attention``), splits a tensor
(``split``, ``chunk``, ``unbind``) or changes its rank (``flatten``, a ``view`` into heads); every other op
passes its input's producer through. Non-leaf module calls are nodes too, the parents of what runs
inside them, so a client can collapse the graph by depth; repeated blocks (siblings of one type in a
``ModuleList`` or ``Sequential``) are marked so they can start collapsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from ..errors import InputError
from ..tracing.tracer import Record, tensor_leaves
from .graph_report import GraphEdge, GraphNode, GraphReport

MAX_NODES = 20_000  # a graph past this is unreadable and its JSON large: the request is refused
COLLAPSE_ABOVE = 150  # leaf-level nodes past which repeated blocks start collapsed

JOINS = {"add", "sub", "mul", "div", "where", "masked_fill", "addcmul", "lerp", "maximum", "minimum"}
ALWAYS = {
    "cat",
    "concat",
    "concatenate",
    "stack",
    "hstack",
    "vstack",
    "matmul",
    "bmm",
    "baddbmm",
    "einsum",
    "scaled_dot_product_attention",
    "softmax",
    "flatten",
}
SPLITS = {"split", "chunk", "unbind", "tensor_split", "split_with_sizes"}
RESHAPES = {"view", "reshape", "unflatten"}
IGNORED = {"size", "dim", "numel", "__get__", "__len__", "__iter__", "__bool__", "item", "tolist", "__format__"}


@dataclass
class _Call:
    module_id: int
    node: GraphNode
    leaf: bool
    flops_at_start: int
    inner: bool = False  # a module called by a leaf: part of that leaf


@dataclass
class GraphRecorder:
    """Collects nodes and edges from the tracer's module hooks and a torch-function mode."""

    model: nn.Module
    nodes: list[GraphNode] = field(default_factory=list)
    edges: dict[tuple[str, str, tuple[int, ...]], GraphEdge] = field(default_factory=dict)
    producers: WeakIdKeyDictionary = field(default_factory=WeakIdKeyDictionary)
    stack: list[_Call] = field(default_factory=list)
    flops: Any = None  # the tracer's FLOP counter, read for each node's share

    def __post_init__(self) -> None:
        self.repeated = _repeated_modules(self.model)
        self.leaves = {id(m) for m in self.model.modules() if next(m.children(), None) is None}

    # ------------------------------------------------------------ bookkeeping

    def _flops_now(self) -> int:
        return int(self.flops.total) if self.flops is not None else 0

    def _add(self, node: GraphNode) -> GraphNode:
        if len(self.nodes) >= MAX_NODES:
            error = InputError(
                f"the graph passes {MAX_NODES:,} nodes (module calls and the ops between them), too many to draw: "
                "summarize the model instead",
                "architecture",
            )
            error.status = 413  # type: ignore[attr-defined]
            raise error
        self.nodes.append(node)
        return node

    def _parent(self) -> GraphNode | None:
        return self.stack[-1].node if self.stack else None

    def _link(self, value: Any, target: str) -> None:
        for tensor in tensor_leaves(value):
            source = self.producers.get(tensor)
            if source is not None and source != target:
                key = (source, target, tuple(tensor.shape))
                self.edges.setdefault(key, GraphEdge(source=source, target=target, shape=list(tensor.shape)))

    def _produce(self, value: Any, node_id: str) -> None:
        for tensor in tensor_leaves(value):
            self.producers[tensor] = node_id

    def _inside_leaf(self) -> bool:
        return bool(self.stack) and self.stack[-1].leaf

    # ------------------------------------------------------------ module hooks (called by the tracer)

    def enter(self, module: nn.Module, record: Record, args: Any, kwargs: Any) -> None:
        if self._inside_leaf():
            self.stack.append(_Call(id(module), self.stack[-1].node, True, 0, inner=True))
            return
        if not self.stack:  # the model's own inputs
            named = [*[(f"input {i}", a) for i, a in enumerate(args)], *kwargs.items()]
            for name, value in named:
                tensors = tensor_leaves(value)
                if tensors:
                    node = self._add(_node(f"i{len(self.nodes)}", "input", name, "input", None, 0, tensors))
                    self._produce(value, node.id)
        parent = self._parent()
        leaf = id(module) in self.leaves
        node = self._add(
            GraphNode(
                id=f"m{len(self.nodes)}",
                kind="module",
                path=record.path,
                type=type(module).__name__,
                parent=parent.id if parent else None,
                depth=len(self.stack),
                leaf=leaf,
                repeated=id(module) in self.repeated,
                params=sum(p.numel() for p in module.parameters()),
            )
        )
        if leaf:
            self._link((args, kwargs), node.id)
        self.stack.append(_Call(id(module), node, leaf, self._flops_now()))

    def exit(self, module: nn.Module, output: Any) -> None:
        # Pop down to this module's call: a child that raised and was caught inside the model left its own.
        index = next((i for i in range(len(self.stack) - 1, -1, -1) if self.stack[i].module_id == id(module)), None)
        if index is None:
            return
        call = self.stack[index]
        del self.stack[index:]
        if call.inner:
            return
        node = call.node
        tensors = tensor_leaves(output)
        node.output_shapes = [list(t.shape) for t in tensors]
        node.output_shape = node.output_shapes[0] if tensors else None
        node.flops = self._flops_now() - call.flops_at_start
        if call.leaf:
            self._produce(output, node.id)
        if not self.stack:  # the model's outputs
            out = self._add(_node(f"x{len(self.nodes)}", "output", "output", "output", None, 0, tensors))
            self._link(output, out.id)

    # ------------------------------------------------------------ functional ops between modules

    def op(self, func: Any, args: tuple, kwargs: dict) -> Any:
        name = getattr(func, "__name__", "") or ""
        if self._inside_leaf() or name in IGNORED:
            return func(*args, **kwargs)
        start = self._flops_now()
        result = func(*args, **kwargs)
        base = name.strip("_").removesuffix("_")
        base = {"iadd": "add", "radd": "add", "isub": "sub", "rsub": "sub", "imul": "mul", "rmul": "mul"}.get(
            base, base
        )
        inputs = [t for t in tensor_leaves((args, kwargs)) if t in self.producers]
        sources = {self.producers[t] for t in inputs}
        outputs = tensor_leaves(result)
        if not outputs or not sources:
            return result
        record = (
            base in ALWAYS
            or (base in JOINS and len(sources) >= 2)
            or (base in SPLITS and len(outputs) >= 2)
            or (base in RESHAPES and outputs[0].dim() != inputs[0].dim())
            or len(sources) >= 2  # any other op that joins two producers' data
        )
        if not record:
            for tensor in outputs:  # passes its input's producer through
                self.producers[tensor] = next(iter(sources))
            return result
        parent = self._parent()
        node = self._add(
            _node(f"o{len(self.nodes)}", "op", parent.path if parent else "", base, parent, len(self.stack), outputs)
        )
        node.flops = self._flops_now() - start
        self._link((args, kwargs), node.id)
        self._produce(result, node.id)
        return result

    def mode(self) -> TorchFunctionMode:
        return _Mode(self)

    # ------------------------------------------------------------ the report

    def report(self, architecture: str | None, batch_size: int) -> GraphReport:
        leaf_level = sum(1 for n in self.nodes if n.leaf or n.kind != "module")
        collapse = [n.id for n in self.nodes if n.repeated and not n.leaf] if leaf_level > COLLAPSE_ABOVE else []
        notes = [
            "One node per module call and per op that joins, splits or reshapes data; other ops pass their input "
            "through. Containers are nodes too (leaf false): collapse them by their id in each node's parent.",
        ]
        if collapse:
            notes.append(f"{leaf_level:,} nodes: the {len(collapse)} repeated blocks are listed to start collapsed.")
        return GraphReport(
            architecture=architecture,
            model_class=type(self.model).__name__,
            batch_size=batch_size,
            nodes=self.nodes,
            edges=list(self.edges.values()),
            collapsed_by_default=collapse,
            notes=notes,
        )


class _Mode(TorchFunctionMode):
    def __init__(self, recorder: GraphRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self.recorder.op(func, args, kwargs or {})


def _node(
    node_id: str, kind: str, path: str, type_: str, parent: Any, depth: int, tensors: list[torch.Tensor]
) -> GraphNode:
    parent_node = parent.node if isinstance(parent, _Call) else parent
    shapes = [list(t.shape) for t in tensors]
    return GraphNode(
        id=node_id,
        kind=kind,
        path=path,
        type=type_,
        parent=parent_node.id if parent_node else None,
        depth=depth,
        leaf=True,
        output_shape=shapes[0] if shapes else None,
        output_shapes=shapes,
    )


def _repeated_modules(model: nn.Module) -> set[int]:
    """Blocks of a stack: children of a ModuleList or Sequential with several siblings of their type (not, say,
    ResNet's four stages, which are attributes of the model)."""
    repeated: set[int] = set()
    for module in model.modules():
        if not isinstance(module, nn.ModuleList | nn.Sequential):
            continue
        children = list(module.children())
        by_type: dict[type, list[nn.Module]] = {}
        for child in children:
            by_type.setdefault(type(child), []).append(child)
        for same in by_type.values():
            if len(same) >= 2 and any(next(c.children(), None) is not None for c in same):
                repeated.update(id(c) for c in same)
    return repeated
