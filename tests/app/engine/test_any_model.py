"""Any model: exact on models Layerscope did not write, fast on CPU-built ones, and harmless to them."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from app.engine import InputError, ModelRunError, NeedsRealRunError, ShapeMismatchError, estimate_memory, summarize
from app.engine.tracing.selection import ModelInputs
from app.engine.tracing.torch_internals import reference_flop_counter
from app.engine.tracing.tracer import tensor_leaves

from .foreign_models import CORPUS, Foreign

ROOT = Path(__file__).resolve().parents[3]


def _same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict(keep_vars=True)
    assert before.keys() == after.keys()
    for key, tensor in after.items():
        assert tensor.device == before[key].device and tensor.dtype == before[key].dtype, key
        assert torch.equal(tensor.detach(), before[key]), key


@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_figures_equal_pytorch_on_a_real_forward(entry: Foreign) -> None:
    model = entry.build()
    data = entry.inputs()
    before = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    report = summarize(model, input_data=data)
    # Parameters: every distinct tensor once (tied embeddings too).
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    # FLOPs and the output: PyTorch's own FlopCounterMode on a real forward, with gradients enabled and oneDNN
    # off, so that fused CPU kernels it has no formula for (the fast encoder path, oneDNN's LSTM) are not used.
    with reference_flop_counter() as counter, torch.backends.mkldnn.flags(enabled=False):
        output = ModelInputs.of(data).run(model)
    assert report.totals.flops == counter.get_total_flops() > 0
    assert report.totals.output_shape == list(tensor_leaves(output)[0].shape)
    assert sum(row.params for row in report.layers) == report.totals.params
    # The caller's module is untouched: same values, same real tensors, no hooks left.
    _same_state(model, before)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_a_llama_2_7b_config_summarizes_exactly_in_seconds() -> None:
    script = textwrap.dedent(
        """
        import json, time, torch, transformers
        from app.engine import summarize
        config = transformers.LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096)
        with torch.device("meta"):
            model = transformers.LlamaForCausalLM(config)
        start = time.perf_counter()
        report = summarize(model, input_data={"input_ids": torch.empty(1, 2048, dtype=torch.long, device="meta")})
        print(json.dumps({"params": report.totals.params, "seconds": time.perf_counter() - start,
                          "rotary": report.row("model.rotary_emb").output_shapes}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["params"] == 6_738_415_616  # Llama-2-7B's published count
    assert data["rotary"] == [[1, 2048, 128], [1, 2048, 128]]  # (cos, sin): a pair, traced as two outputs
    assert data["seconds"] < 20


def test_a_cpu_built_module_is_traced_on_meta_stand_ins() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 10))
    report = summarize(model, input_size=(3, 32, 32), batch_size=4)
    assert report.run == "meta"  # no weight was converted to a fake tensor
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.row("4").output_shape == [4, 10]


class HoldsATensor(nn.Module):
    """Keeps a real tensor outside its parameters and buffers: meta cannot mix it in, fake tensors can."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.offset = torch.ones(4)

    def forward(self, x):
        return self.linear(x) + self.offset


def test_a_module_meta_cannot_run_falls_back_to_fake_tensors() -> None:
    report = summarize(HoldsATensor(), input_size=(4,), batch_size=2)
    assert report.run == "fake" and report.totals.output_shape == [2, 4]


# ---------------------------------------------------------------- no side effects


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_measuring_leaves_the_callers_module_bit_for_bit(precision: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 3))
    model.train()
    model[1].eval()  # a mixed state, to check each flag
    model[0].weight.grad = torch.full_like(model[0].weight, 7.0)  # a gradient the caller had
    before = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    grad = model[0].weight.grad.clone()
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    report = estimate_memory(model, input_size=(3, 16, 16), batch_size=4, precision=precision, measure=True)
    assert report.measured_peak_bytes and report.precision == precision
    _same_state(model, before)  # weights and BatchNorm statistics unchanged, still float32 on the CPU
    assert torch.equal(model[0].weight.grad, grad) and model[4].weight.grad is None
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)


# ---------------------------------------------------------------- models that need data


class Detector(nn.Module):
    """A detection-style head: keeps the boxes whose score passes a threshold (nonzero: a data-dependent shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = Head()

    def forward(self, x):
        return self.head(self.backbone(x))


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Conv2d(8, 1, 1)

    def forward(self, features):
        scores = self.score(features).flatten(1)
        keep = torch.nonzero(scores > 0)
        return features.flatten(2)[keep[:, 0], :, keep[:, 1]]


def test_data_dependence_is_reported_at_the_innermost_module_with_a_hint_that_works() -> None:
    with pytest.raises(NeedsRealRunError) as info:
        summarize(Detector(), input_size=(3, 8, 8))
    error = info.value
    assert error.layer == "head" and error.layer_type == "Head" and "nonzero" in (error.op or "")
    assert "measure=True" in str(error) and "allow_real_run=True" in str(error)
    with torch.device("meta"):
        on_meta = Detector()
    with pytest.raises(NeedsRealRunError):  # built on meta: reported the same way, not as a shape mismatch
        summarize(on_meta, input_size=(3, 8, 8))


def test_a_model_that_reads_its_data_summarizes_on_a_real_forward_when_allowed() -> None:
    torch.manual_seed(0)
    model = Detector().eval()
    images = torch.randn(2, 3, 8, 8)
    report = summarize(model, input_data=images, allow_real_run=True)
    assert report.run == "real" and any("real forward" in note for note in report.notes)
    expected = model(images)
    assert report.totals.output_shape == list(expected.shape)
    assert report.row("backbone.0").flops == 2 * 2 * 8 * 64 * 3 * 9  # batch 2: 8 maps of 8x8, 3*3x3 each
    with pytest.raises(NeedsRealRunError):  # not allowed: refused, nothing runs
        summarize(model, input_data=images)


def test_measure_runs_a_model_that_reads_its_data_without_an_estimate_first() -> None:
    report = estimate_memory(Detector(), input_size=(3, 8, 8), batch_size=2, mode="inference", measure=True)
    assert not report.estimated and report.peak_bytes == report.measured_peak_bytes > 0
    assert report.formula is None and any("Measured, not estimated" in n for n in report.notes)
    with pytest.raises(NeedsRealRunError):
        estimate_memory(Detector(), input_size=(3, 8, 8), mode="inference")


# ---------------------------------------------------------------- errors name the module at fault


class Deep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 8), nn.Sequential(nn.Linear(8, 8), nn.Linear(9, 2)))

    def forward(self, x):
        return self.encoder(x)


def test_shape_errors_name_the_innermost_module() -> None:
    with pytest.raises(ShapeMismatchError) as info:
        summarize(Deep(), input_size=(8,))
    assert info.value.layer == "encoder.1.1" and info.value.input_shapes == [[1, 8]]
    assert info.value.expected == "(*, 9)"


class Broken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Identity(), Cholesky())

    def forward(self, x):
        return self.inner(x)


class Cholesky(nn.Module):
    def forward(self, x):
        return torch.linalg.cholesky(x.long())


def test_other_failures_are_engine_errors_with_the_op() -> None:
    with pytest.raises(ModelRunError) as info:
        summarize(Broken(), input_size=(3, 3))
    assert info.value.layer == "inner.1" and info.value.layer_type == "Cholesky"
    assert info.value.details()["op"]


def test_input_data_forms() -> None:
    model = nn.Linear(4, 2)
    assert summarize(model, input_data=torch.zeros(5, 4)).input_shapes == [[5, 4]]
    assert summarize(model, input_data=(torch.zeros(5, 4),)).batch_size == 5
    assert summarize(model, input_data={"input": torch.zeros(5, 4, device="meta")}).totals.output_shape == [5, 2]
    with pytest.raises(InputError):
        summarize(model, input_data=torch.zeros(5, 4), input_size=(4,))
    with pytest.raises(InputError):
        summarize(model, input_data=torch.zeros(5, 4), batch_size=3)
    assert copy.deepcopy(model)  # still an ordinary module
