"""The layerscope command: tables, JSON, and exit status 2 on bad input."""

from __future__ import annotations

import json

import pytest

from app.cli import main, parse_assignments, parse_size


def test_summary_table_has_tree_and_separators(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "alexnet", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "62,378,344" in out
    assert "├─ conv1 (Conv2d)" in out and "└─ fc3 (Linear)" in out
    assert "2 x 96 x 55 x 55" in out


def test_summary_json_matches_engine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet", "--set", "depth=50", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["params"] == 25_557_032
    assert data["config"]["depth"] == 50


def test_summary_csv(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "lenet5", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("path,type,depth")
    assert any(line.startswith("c1,Conv2d,1,1,1x1x32x32,1x6x28x28,156") for line in lines)


def test_preset_and_input_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "gpt", "--preset", "nano", "--input-size", "64", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_shapes"] == [[1, 64]]


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "resnet" in out and "138,357,544" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["summary", "alexnett"],
        ["summary", "resnet", "--set", "depth=7"],
        ["summary", "alexnet", "--input-size", "3,20,20"],
        ["summary", "alexnet", "--input-size", "three"],
        ["summary", "alexnet", "--set", "novalue"],
        ["summary", "alexnet", "--batch", "0"],
        ["summary", "alexnet", "--batch", "two"],
        ["memory", "alexnet", "--optimizer", "lamb"],
        ["memory", "mlp", "--precision", "bf16", "--dtype", "float16"],
        ["recipes", "qlora-llama-9b"],
        ["frobnicate"],
    ],
)
def test_bad_input_exits_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("layerscope: error:") and "\n" not in err and "Traceback" not in err


def test_recipes_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "qlora-llama-3.1-8b" in out and "2 x 2,048 tokens" in out


def test_parsers() -> None:
    assert parse_assignments(["depth=50", "hidden=[1,2]", "bias=false", "variant=modern"]) == {
        "depth": 50,
        "hidden": [1, 2],
        "bias": False,
        "variant": "modern",
    }
    assert parse_size("3x224x224") == (3, 224, 224)


def test_memory_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory", "mlp", "--batch", "4", "--optimizer", "sgd"]) == 0
    out = capsys.readouterr().out
    assert "Peak memory:" in out and "M + B*m*layers" in out and "gradients" in out


def test_memory_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory", "lenet5", "--mode", "inference", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] == "inference" and data["peak_bytes"] > 0


def test_inputs_by_shape_and_dtype(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["summary", "transformer", "--preset", "tiny", "--input", "2x10:int64", "--input", "2x7:int64", "--json"])
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["input_shapes"] == [[2, 10], [2, 7]] and data["totals"]["output_shape"] == [2, 7, 1000]


def test_features_and_attention_commands(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert main(["features", "lenet5", "--set", "variant=modern", "--weights", "trained", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "c1" in out and "Top classes" in out
    assert (tmp_path / "c1.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["attention", "gpt", "--preset", "nano", "--text", "Attention is all you need."]) == 0
    out = capsys.readouterr().out
    assert "blocks.0.attn (causal)" in out and "4 attention layers" in out


def test_graph_lists_the_joins_and_writes_dot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "resnet"]) == 0
    text = capsys.readouterr().out
    assert "8 ops between them" in text
    assert "layer2.0: add(layer2.0.bn2 1x128x28x28, layer2.0.downsample.1 1x128x28x28)" in text
    assert main(["graph", "resnet", "--dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith('digraph "ResNet"') and "subgraph cluster_" in dot and dot.count(" -> ") == 78
    assert main(["graph", "lenet5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nodes"][0]["kind"] == "input"


def test_max_batch_and_step_time(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["max-batch", "resnet", "--gpu", "t4-16gb", "--mode", "inference", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["mode"] == "inference" and fit["peak_bytes"] <= fit["usable_bytes"] < fit["next_peak_bytes"]
    assert main(["step-time", "gpt", "--preset", "nano", "--mode", "generate", "--new-tokens", "8", "--json"]) == 0
    step = json.loads(capsys.readouterr().out)
    assert step["mode"] == "generate" and step["tokens_per_second"] > 0


def test_memory_with_a_lora_adapter(capsys) -> None:
    """--lora-r and --lora-targets fine-tune GPT-2's attention only: few trainable parameters, the rest frozen."""
    code = main(["memory", "gpt", "--preset", "nano", "--lora-r", "4", "--lora-targets", "q_proj,v_proj", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["adapter"]["r"] == 4 and report["adapter"]["target_modules"] == ["q_proj", "v_proj"]
    assert 0 < report["trainable_parameters"] < report["frozen_parameters"] / 10
