"""summarize(): shapes, parameters, FLOPs and formulas, on meta, for every architecture."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import models
from app.engine import InputError, NeedsRealRunError, ShapeMismatchError, summarize
from models.registry import REGISTRY

CASES = [(arch.name, None) for arch in REGISTRY] + [(arch.name, p.name) for arch in REGISTRY for p in arch.presets]


@pytest.mark.parametrize(("name", "preset"), CASES, ids=[f"{n}-{p or 'default'}" for n, p in CASES])
def test_every_architecture_summarizes_and_rows_add_up(name: str, preset: str | None) -> None:
    report = summarize(name, {"preset": preset} if preset else None, batch_size=2)
    rows, totals = report.layers, report.totals
    assert sum(r.params for r in rows) == totals.params
    assert sum(r.trainable_params for r in rows) == totals.trainable_params
    assert sum(r.non_trainable_params for r in rows) == totals.non_trainable_params
    assert sum(r.flops for r in rows) == totals.flops
    assert sum(r.macs for r in rows) == totals.macs
    assert sum(r.buffers for r in rows) == totals.buffers
    assert rows[0].params_inclusive == totals.params
    assert rows[0].flops_inclusive == totals.flops
    assert totals.flops == 2 * totals.macs > 0
    assert totals.output_shape and totals.output_shape[0] == 2
    arch = models.get_architecture(name)
    declared = arch.preset(preset).params if preset else arch.default_params
    if declared is not None:
        assert totals.params == declared


def test_alexnet_layer_shapes_follow_the_course() -> None:
    report = summarize("alexnet", batch_size=1)
    spatial = {
        path: report.row(path).output_shape
        for path in (
            "features.conv1",
            "features.pool1",
            "features.conv2",
            "features.pool2",
            "features.conv5",
            "features.pool3",
        )
    }
    assert spatial == {
        "features.conv1": [1, 96, 55, 55],
        "features.pool1": [1, 96, 27, 27],
        "features.conv2": [1, 256, 27, 27],
        "features.pool2": [1, 256, 13, 13],
        "features.conv5": [1, 256, 13, 13],
        "features.pool3": [1, 256, 6, 6],
    }
    assert report.row("flatten").output_shape == [1, 9216]
    per_layer = [report.row(f"features.conv{i}").params for i in range(1, 6)]
    per_layer += [report.row(f"classifier.fc{i}").params for i in range(1, 4)]
    assert per_layer == [34_944, 614_656, 885_120, 1_327_488, 884_992, 37_752_832, 16_781_312, 4_097_000]
    assert report.totals.params == 62_378_344
    fc_share = sum(per_layer[5:]) / report.totals.params
    assert round(fc_share * 100) == 94  # the course: 94% of the parameters are in the dense layers


def test_alexnet_explains_conv1_and_fc1() -> None:
    report = summarize("alexnet")
    conv1 = report.row("features.conv1").explain
    assert "H_out = W_out = floor((224 + 2*2 - 11)/4) + 1 = 55" in conv1
    assert any(line.startswith("params = 96*3*11^2 + 96 = 34,944") for line in conv1)
    assert any("105,415,200" in line for line in conv1)  # MACs per sample
    fc1 = report.row("classifier.fc1").explain
    assert any(line.startswith("params = 4096*9216 + 4096 = 37,752,832") for line in fc1)
    assert "MACs per sample = 9216*4096 = 37,748,736" in fc1
    assert any("floor((55 - 3)/2) + 1 = 27" in line for line in report.row("features.pool1").explain)
    assert any("no ReLU" in line for line in report.row("classifier.fc3").explain)


@pytest.mark.parametrize(
    ("name", "path", "fragment"),
    [
        ("resnet", "layer1.0.bn1", "params = 2*64 = 128"),
        ("gpt", "blocks.0.attn", "d_k = 768/12 = 64"),
        ("gpt", "blocks.0.attn", "params = 4*(768*768 + 768) = 2,362,368"),
        ("gpt", "wte", "params = 50,257*768 = 38,597,376"),
        ("vit", "blocks.0.ln_1", "params = 2*768 = 1,536"),
        ("transformer", "positional", "i = 0 .. 255"),
    ],
)
def test_explain_covers_norms_attention_and_embeddings(name: str, path: str, fragment: str) -> None:
    lines = summarize(name).row(path).explain
    assert any(fragment in line for line in lines), lines


def test_flops_scale_with_batch_and_match_hand_counts() -> None:
    one = summarize("alexnet", batch_size=1)
    four = summarize("alexnet", batch_size=4)
    assert four.totals.macs == 4 * one.totals.macs
    assert one.row("features.conv1").macs == 96 * 55 * 55 * 3 * 11 * 11
    assert one.row("classifier.fc1").macs == 9216 * 4096
    mlp = summarize("mlp", batch_size=3)
    assert mlp.totals.macs == 3 * (10 * 200 + 200 * 100 + 100 * 1)


def test_tied_weights_count_once_and_say_where() -> None:
    report = summarize("gpt", {"preset": "nano"})
    head = report.row("lm_head")
    assert head.params == 0
    assert head.shared_params == ["weight = wte.weight"]
    assert report.totals.params == models.get_architecture("gpt").preset("nano").params


def test_transformer_takes_source_and_target() -> None:
    report = summarize("transformer", {"preset": "tiny"}, input_size=(20, 12), batch_size=3)
    assert report.input_shapes == [[3, 20], [3, 12]]
    assert report.totals.output_shape == [3, 12, 1000]
    assert report.row("decoder.0.cross_attn").input_shapes == [[3, 12, 128], [3, 20, 128]]


def test_dtype_changes_bytes_not_counts() -> None:
    fp32 = summarize("resnet", dtype="float32")
    bf16 = summarize("resnet", dtype="bfloat16")
    assert fp32.totals.params == bf16.totals.params
    assert fp32.totals.param_bytes == 2 * bf16.totals.param_bytes == 4 * fp32.totals.params


def test_too_small_input_names_the_layer_and_both_shapes() -> None:
    with pytest.raises(ShapeMismatchError) as info:
        summarize("alexnet", input_size=(3, 32, 32))
    err = info.value
    assert err.layer == "features.pool3"
    assert err.input_shapes == [[1, 256, 1, 1]]
    assert "(1, 256, 1, 1)" in str(err) and "3 window" in str(err)


def test_wrong_feature_size_names_the_dense_layer() -> None:
    with pytest.raises(ShapeMismatchError) as info:
        summarize("alexnet", input_size=(3, 256, 256))
    assert info.value.layer == "classifier.fc1"
    assert "(1, 12544)" in str(info.value) and "(*, 9216)" in str(info.value)


def test_wrong_channel_count_names_the_first_conv() -> None:
    with pytest.raises(ShapeMismatchError) as info:
        summarize("resnet", input_size=(1, 224, 224))
    assert info.value.layer == "conv1"
    assert "(N, 3, H, W)" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"dtype": "int8"}, "dtype"),
        ({"input_size": (0, 10)}, "input_size"),
        ({"input_size": "abc"}, "input_size"),
    ],
)
def test_bad_arguments_say_which(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError) as info:
        summarize("alexnet", **kwargs)
    assert info.value.field == field


def test_bad_config_values_name_the_field() -> None:
    with pytest.raises(models.ConfigError) as info:
        summarize("mlp", {"hidden": [100, -1]})
    assert info.value.field == "config.hidden.1"
    with pytest.raises(models.ConfigError) as info:
        summarize("vit", {"patch_size": 15})
    assert "must divide" in str(info.value)


class _Branchy(nn.Module):
    """Reads a value: cannot run on fake tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        x = self.inner(x)
        if x.sum().item() > 0:
            return self.dropout(x)
        return x


def test_user_module_needing_real_data_is_reported_and_left_as_it_was() -> None:
    model = _Branchy().train()
    model.inner.eval()  # a mixed state, to check each flag is restored
    with pytest.raises(NeedsRealRunError, match=r"\.item\(\)"):
        summarize(model, input_size=(4,))
    assert model.training and not model.inner.training and model.dropout.training
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_user_module_summarizes_without_touching_it() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 10))
    before = model[0].weight.detach().clone()
    report = summarize(model, input_size=(3, 32, 32), batch_size=4)
    assert report.architecture is None
    assert report.totals.params == 3 * 8 * 9 + 8 + 7200 * 10 + 10
    assert report.row("1").output_shape == [4, 8, 30, 30]
    assert torch.equal(model[0].weight, before)
    assert type(model[0].weight) is nn.Parameter
    assert all(not m._forward_hooks for m in model.modules())


def test_user_module_shape_error_names_layer() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 2))
    with pytest.raises(ShapeMismatchError) as info:
        summarize(model, input_size=(3, 4))
    assert info.value.layer == "1" and "(*, 10)" in str(info.value)


def test_report_is_json_serialisable() -> None:
    report = summarize("lenet5")
    data = json.loads(report.model_dump_json())
    assert data["totals"]["params"] == 61_706
    assert data["layers"][1]["path"] == "c1"


def test_seven_billion_gpt_summarizes_without_allocating() -> None:
    script = textwrap.dedent(
        """
        import resource, time, json
        from app.engine import summarize
        import models, torch
        summarize("mlp")  # warm imports before the baseline
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        report = summarize("gpt", {"preset": "gpt3-6.7b"})
        took = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"params": report.totals.params, "grew_kib": peak - base, "seconds": took}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=_root())
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["params"] > 6_500_000_000
    assert data["grew_kib"] < 1024 * 1024  # under 1 GiB: no weights were materialised


def _root() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[3])


@pytest.mark.parametrize(("name", "preset"), [*CASES[:9], ("resnet", "resnext50_32x4d"), ("sequential", "mlp")])
def test_shape_rules_agree_with_running_the_layers(name: str, preset: str | None, monkeypatch) -> None:
    """The fast shape rules for common layers give exactly what the meta kernels give."""
    from app.engine.summary import summarizer as summary

    config = {"preset": preset} if preset else None
    fast = summarize(name, config, batch_size=3)
    monkeypatch.setattr(summary, "FAST_PATHS", False)
    slow = summarize(name, config, batch_size=3)
    assert fast.model_dump() == slow.model_dump()


@pytest.mark.parametrize("name", ["alexnet", "resnet", "gpt", "vit", "transformer", "lenet5"])
def test_flop_counter_matches_torch_flop_counter_mode(name: str) -> None:
    from app.engine.tracing.selection import make_inputs, select
    from app.engine.tracing.torch_internals import reference_flop_counter

    selection = select(name, {"preset": "tiny"} if name == "transformer" else None)
    inputs = make_inputs(selection, 2, torch.float32, "meta")
    with reference_flop_counter() as counter, torch.no_grad():
        inputs.run(selection.module.eval())
    assert summarize(name, selection.config, batch_size=2).totals.flops == counter.get_total_flops()


def test_reused_meta_models_give_identical_reports() -> None:
    from app.engine.tracing.selection import META_MODELS

    META_MODELS.clear()
    cold = summarize("resnet", {"depth": 34}, batch_size=2)
    warm = summarize("resnet", {"depth": 34}, batch_size=2)
    assert cold.model_dump() == warm.model_dump()
    with pytest.raises(ShapeMismatchError):
        summarize("resnet", {"depth": 34}, input_size=(1, 64, 64))
    assert summarize("resnet", {"depth": 34}, batch_size=2).model_dump() == cold.model_dump()


# ---------------------------------------------------------------- worked formulas a student reads


def _row(report, path: str):
    return next(r for r in report.layers if r.path == path)


def test_cross_attention_formula_uses_the_context_length() -> None:
    """10 source and 7 target tokens: 8 heads x 7 queries x 10 keys, 2*8*7*10*64 = 71,680 MACs."""
    with torch.device("meta"):
        model = models.build_model("transformer", {"encoder_layers": 1, "decoder_layers": 1})
    ids = (torch.zeros(1, 10, dtype=torch.long), torch.zeros(1, 7, dtype=torch.long))
    row = _row(summarize(model, input_data=ids), "decoder.0.cross_attn")
    assert row.macs == 2 * 8 * 7 * 10 * 64
    text = "\n".join(row.explain)
    assert "8 heads x 7 x 10 = 560" in text and "= 71,680" in text


def test_adaptive_pool_names_its_overlapping_windows() -> None:
    """5 -> 3 positions: PyTorch's windows are [0, 2), [1, 4), [3, 5), overlapping."""
    model = nn.Sequential(nn.AdaptiveAvgPool2d(3))
    reference = nn.AdaptiveAvgPool2d(3)(torch.arange(25.0).view(1, 1, 5, 5))
    assert reference[0, 0, 0, 1] == torch.arange(25.0).view(5, 5)[0:2, 1:4].mean()  # the window [1, 4)
    text = "\n".join(_row(summarize(model, input_size=(1, 5, 5)), "0").explain)
    assert "[0, 2), [1, 4), [3, 5)" in text and "about" not in text


def test_position_embedding_and_tied_rows_read_right() -> None:
    report = summarize("gpt", {"layers": 1})
    assert "per position" in _row(report, "wpe").explain[0]
    assert "per token" in _row(report, "wte").explain[0]
    head = _row(report, "lm_head")
    assert head.params == 0 and not any(line.startswith("params =") for line in head.explain)
    assert any("wte.weight (tied)" in line for line in head.explain)


def test_family_notes_follow_the_configuration() -> None:
    original = summarize("alexnet")
    assert any("27 x 27 x 256" in line for line in _row(original, "features.conv2").explain)
    assert any("no ReLU" in line or "has none" in line for line in _row(original, "classifier.fc3").explain)
    torchvision = summarize("alexnet", {"variant": "torchvision"})
    assert not any(
        "Note:" in line for row in torchvision.layers if row.path.startswith("features") for line in row.explain
    )
    base = summarize("transformer")
    assert base.totals.params == 63_082_496
    assert any("65M" in line and "37,000" in line for line in _row(base, "").explain)
    assert not any("65M" in line for line in _row(summarize("transformer", {"d_model": 256}), "").explain)
    lenet = summarize("lenet5")
    assert any("1,516" in line for line in _row(lenet, "c3").explain)
