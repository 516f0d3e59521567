"""trace_graph(): module calls and the ops that join or split data, with the tensors between them."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import models
from app.engine.summary import trace_graph
from models.registry import REGISTRY


def by_id(report) -> dict:
    return {node.id: node for node in report.nodes}


@pytest.mark.parametrize("name", [arch.name for arch in REGISTRY])
def test_every_family_gives_a_consistent_graph(name: str) -> None:
    report = trace_graph(name, {"preset": "gpt2"} if name == "huggingface" else None)
    nodes = by_id(report)
    order = {node.id: i for i, node in enumerate(report.nodes)}
    assert [n.kind for n in report.nodes].count("input") >= 1 and report.nodes[-1].kind == "output"
    for edge in report.edges:
        assert order[edge.source] < order[edge.target], edge  # recorded in execution order: no cycle
        # the tensor as received: the producer's output, or a view of it that an untracked op (transpose, slice) made
        produced = nodes[edge.source].output_shapes
        assert edge.shape in produced or math.prod(edge.shape) <= max(math.prod(s) for s in produced), edge
    for node in report.nodes:
        assert node.parent is None or (nodes[node.parent].kind == "module" and not nodes[node.parent].leaf)
    # every leaf-level node but the inputs is fed by something, and everything but the output feeds something
    targets = {e.target for e in report.edges}
    sources = {e.source for e in report.edges}
    for node in report.nodes:
        if node.kind == "op" or node.kind == "output":
            assert node.id in targets, node
        if node.kind in ("input", "op"):
            assert node.id in sources, node


def test_resnet18_has_eight_residual_additions_and_three_downsample_branches() -> None:
    report = trace_graph("resnet", {"depth": 18})
    nodes = by_id(report)
    adds = [n for n in report.nodes if n.kind == "op" and n.type == "add"]
    assert len(adds) == 8
    into = {a.id: [nodes[e.source] for e in report.edges if e.target == a.id] for a in adds}
    assert all(len(sources) == 2 for sources in into.values())
    shortcuts = [s.path for sources in into.values() for s in sources if "downsample" in s.path]
    assert shortcuts == ["layer2.0.downsample.1", "layer3.0.downsample.1", "layer4.0.downsample.1"]
    model = models.build_model("resnet", {"depth": 18})
    for stage in (2, 3, 4):
        assert model.get_submodule(f"layer{stage}.0.downsample.0").kernel_size == (1, 1)
    assert report.collapsed_by_default == []  # small enough to show whole


def test_node_shapes_are_pytorchs_own() -> None:
    """Every module node's output shape equals what a real forward of the same model gives."""
    torch.manual_seed(0)
    model = models.build_model("resnet", {"depth": 18}).eval()
    real: dict[str, list[int]] = {}

    def keep(path: str):
        def hook(module, args, output) -> None:
            real.setdefault(path, list(output.shape))

        return hook

    handles = [m.register_forward_hook(keep(path)) for path, m in model.named_modules()]
    try:
        with torch.no_grad():
            model(torch.randn(2, 3, 64, 64))
    finally:
        for handle in handles:
            handle.remove()
    report = trace_graph(model, input_size=(3, 64, 64), batch_size=2)
    seen = 0
    for node in report.nodes:
        if node.kind == "module":
            assert node.output_shape == real[node.path], node.path
            seen += 1
    assert seen == len(real)


def test_transformer_encoder_output_enters_every_cross_attention() -> None:
    report = trace_graph("transformer", {"encoder_layers": 2, "decoder_layers": 3})
    nodes = by_id(report)
    fed = {
        nodes[e.target].path.rsplit(".", 1)[0]
        for e in report.edges
        if nodes[e.source].path.startswith("encoder.") and "cross_attn" in nodes[e.target].path
    }
    assert fed == {"decoder.0.cross_attn", "decoder.1.cross_attn", "decoder.2.cross_attn"}
    assert any(n.type == "scaled_dot_product_attention" for n in report.nodes)


def test_a_deep_decoder_starts_collapsed() -> None:
    report = trace_graph("huggingface", {"preset": "llama-3.1-8b"}, input_size=(16,))
    nodes = by_id(report)
    collapsed = [nodes[i] for i in report.collapsed_by_default]
    assert len(collapsed) == 32 and {n.type for n in collapsed} == {"LlamaDecoderLayer"}


class TwoBranches(nn.Module):
    """Any module: a pair returned by a submodule, a cat, a chunk, a flatten between two layers."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 4, 3, padding=1)
        self.right = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        both = torch.cat([self.left(x), self.right(x)], dim=1)
        first, second = both.chunk(2, dim=1)
        joined = torch.cat([first, second.relu()], dim=1)
        return self.head(joined.flatten(1))


def test_any_module_joins_and_splits() -> None:
    with torch.device("meta"):
        model = TwoBranches()
    report = trace_graph(model, input_size=(3, 8, 8))
    nodes = by_id(report)
    ops = [n.type for n in report.nodes if n.kind == "op"]
    assert ops == ["cat", "chunk", "cat", "flatten"]
    chunk = next(n for n in report.nodes if n.type == "chunk")
    assert chunk.output_shapes == [[1, 4, 8, 8], [1, 4, 8, 8]]
    assert {nodes[e.source].path for e in report.edges if nodes[e.target].type == "cat"} >= {"left", "right"}
    assert torch._C._len_torch_function_stack() == 0  # the recording mode is gone
    assert not model._forward_hooks and not model.left._forward_pre_hooks


def test_every_foreign_model_gives_a_graph_without_changing_it() -> None:
    """The graph works for any model the summary works for: the any-model corpus (recurrent layers, pairs,
    dicts, Hugging Face GPT-2, BERT, Llama, Mixtral, T5 with its own inputs), and leaves each model as it was."""
    from .foreign_models import CORPUS

    for entry in CORPUS:
        model = entry.build()
        before = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
        report = trace_graph(model, input_data=entry.inputs())
        kinds = {node.kind for node in report.nodes}
        assert {"input", "module", "output"} <= kinds, entry.name
        ids = {node.id for node in report.nodes}
        assert all(e.source in ids and e.target in ids for e in report.edges), entry.name
        assert any(e.target == report.nodes[-1].id for e in report.edges), f"{entry.name}: nothing reaches the output"
        after = model.state_dict(keep_vars=True)
        assert all(torch.equal(before[k], after[k].detach()) for k in before), entry.name


def test_a_graph_past_the_node_limit_is_refused_with_a_413(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.engine.summary.graph as graph
    from app.engine.errors import InputError

    monkeypatch.setattr(graph, "MAX_NODES", 50)  # ResNet-18 has 87
    with pytest.raises(InputError, match="passes 50 nodes") as info:
        trace_graph("resnet", {"depth": 18})
    assert info.value.status == 413
