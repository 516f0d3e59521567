"""Each lab against its hand computation (the notes' examples) and against PyTorch's own modules."""

from __future__ import annotations

import math
import re
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from app.engine.errors import InputError
from app.engine.labs import LABS, run_lab

F64 = torch.float64


def close(a, b, tol: float = 1e-5) -> bool:
    return torch.allclose(torch.as_tensor(a, dtype=F64), torch.as_tensor(b, dtype=F64), atol=tol, rtol=0)


def test_every_lab_computes_the_notes_example_from_an_empty_body() -> None:
    assert list(LABS) == [
        "pooling",
        "convolution",
        "softmax",
        "backprop",
        "dropout",
        "batchnorm",
        "bpe",
        "attention",
        "positional-encoding",
        "parameters",
        "memory",
    ]
    for name, lab in LABS.items():
        result = run_lab(name, {})
        assert result["lab"] == name and result["inputs"] == lab.input_cls().model_dump(mode="json")
        assert result["steps"], name
        assert all(step["formula"] for step in result["steps"]), name


# ---------------------------------------------------------------- pooling and convolution


def test_pooling_default_is_the_notes_maxpool_answer() -> None:
    result = run_lab("pooling", None)
    assert result["output"] == [[6, 5, 3], [7, 8, 7], [2, 9, 4]]
    assert len(result["windows"]) == 9


@pytest.mark.parametrize(
    ("kind", "kernel", "stride", "padding", "ceil"),
    [("max", 3, 2, 1, True), ("avg", 3, 2, 1, True), ("avg", 2, 1, 0, False), ("max", 3, 3, 1, False)],
)
def test_pooling_matches_torch(kind: str, kernel: int, stride: int, padding: int, ceil: bool) -> None:
    matrix = torch.arange(1, 50, dtype=F64).reshape(7, 7).remainder(11).tolist()
    body = {"matrix": matrix, "kind": kind, "kernel_size": kernel, "stride": stride, "padding": padding}
    result = run_lab("pooling", {**body, "ceil_mode": ceil})
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d
    expected = pool(torch.tensor(matrix)[None, None], kernel, stride, padding, ceil_mode=ceil)[0, 0]
    assert close(result["output"], expected)


def test_convolution_matches_conv2d_and_counts_the_dense_equivalent() -> None:
    result = run_lab("convolution", None)
    x = torch.tensor(run_lab("pooling", None)["inputs"]["matrix"], dtype=F64)
    kernel = torch.tensor([[1.0, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=F64)
    assert close(result["output"], F.conv2d(x[None, None], kernel[None, None])[0, 0])
    # top-left window by hand: (1 + 4 + 7) - (2 + 5 + 8)
    assert result["output"][0][0] == -3
    assert result["parameters"] == {"convolution": 10, "dense_equivalent": 36 * 16 + 16}

    strided = run_lab("convolution", {"stride": 2, "padding": 1, "dilation": 2, "bias": 0.5})
    expected = F.conv2d(x[None, None], kernel[None, None], torch.tensor([0.5], dtype=F64), 2, 1, 2)[0, 0]
    assert close(strided["output"], expected)


# ---------------------------------------------------------------- softmax


def test_softmax_by_hand_and_against_cross_entropy() -> None:
    result = run_lab("softmax", None)
    exps = [math.exp(z) for z in (2.0, 1.0, 0.1)]
    probabilities = [e / sum(exps) for e in exps]
    assert close(result["probabilities"], probabilities)
    assert result["loss"] == pytest.approx(-math.log(probabilities[0]), abs=1e-7)
    assert close(result["gradient"], [probabilities[0] - 1, probabilities[1], probabilities[2]])


def test_softmax_temperature_and_label_smoothing_match_torch() -> None:
    logits, target, temperature, smoothing = [1.5, -0.5, 3.0, 0.25], 2, 2.0, 0.1
    result = run_lab(
        "softmax", {"logits": logits, "target": target, "temperature": temperature, "label_smoothing": smoothing}
    )
    z = torch.tensor(logits, dtype=F64, requires_grad=True)
    loss = nn.CrossEntropyLoss(label_smoothing=smoothing)((z / temperature)[None], torch.tensor([target]))
    loss.backward()
    assert result["loss"] == pytest.approx(loss.item(), abs=1e-7)
    assert close(result["gradient"], z.grad)
    assert close(result["probabilities"], torch.softmax(z.detach() / temperature, -1))


# ---------------------------------------------------------------- backpropagation


def test_backprop_matches_an_nn_module_and_one_sgd_step() -> None:
    result = run_lab("backprop", None)
    body = result["inputs"]
    model = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1)).to(F64)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(body["w1"], dtype=F64))
        model[0].bias.copy_(torch.tensor(body["b1"], dtype=F64))
        model[2].weight.copy_(torch.tensor(body["w2"], dtype=F64))
        model[2].bias.copy_(torch.tensor(body["b2"], dtype=F64))
    y = model(torch.tensor(body["x"], dtype=F64))
    loss = 0.5 * ((y - torch.tensor(body["target"], dtype=F64)) ** 2).sum()
    loss.backward()
    # the hidden layer by hand: sigmoid(0.15*0.05 + 0.2*0.1 + 0.35)
    assert result["steps"][1]["value"][0] == pytest.approx(1 / (1 + math.exp(-0.3775)), abs=1e-6)
    assert result["loss"] == pytest.approx(loss.item(), abs=1e-9)
    grads = {
        "w1": model[0].weight.grad,
        "b1": model[0].bias.grad,
        "w2": model[2].weight.grad,
        "b2": model[2].bias.grad,
    }
    torch.optim.SGD(model.parameters(), lr=body["learning_rate"]).step()
    after = {"w1": model[0].weight, "b1": model[0].bias, "w2": model[2].weight, "b2": model[2].bias}
    assert len(result["weights"]) == 9
    for row in result["weights"]:
        name, index = re.fullmatch(r"(\w\d)\[(.*)\]", row["weight"]).groups()
        idx = tuple(int(i) for i in index.split(","))
        assert row["gradient"] == pytest.approx(float(grads[name][idx]), abs=1e-9), row
        assert row["updated"] == pytest.approx(after[name].detach()[idx].item(), abs=1e-9), row


def test_backprop_rejects_mismatched_shapes_naming_the_field() -> None:
    with pytest.raises(InputError) as info:
        run_lab("backprop", {"w1": [[0.1, 0.2, 0.3]]})
    assert info.value.field == "w1"


# ---------------------------------------------------------------- dropout


def test_dropout_notes_example_both_conventions() -> None:
    result = run_lab("dropout", None)
    assert result["train_output"] == [4, 0, -6, 0, 10]  # x*m/(1-p), PyTorch's inverted dropout
    assert result["eval_output"] == [2, 8, -3, 11, 5]  # identity at eval
    assert result["original_train_output"] == [2, 0, -3, 0, 5]  # the notes: x*m
    assert result["original_test_output"] == [1, 4, -1.5, 5.5, 2.5]  # the notes: p*x at test (keep 0.5)
    sections = {e["section"]: e for e in result["errata"]}
    assert sections["4.4 dropout at test"]["convention"] is True


def test_dropout_sampled_mask_is_pytorchs() -> None:
    result = run_lab("dropout", {"x": [1.0] * 12, "p": 0.25, "mask": None, "seed": 7})
    torch.manual_seed(7)
    expected = nn.Dropout(0.25).train()(torch.ones(12, dtype=F64))
    assert close(result["train_output"], expected)
    assert close(result["mask"], (expected != 0).to(F64))


# ---------------------------------------------------------------- batch normalisation


def test_batchnorm_matches_batchnorm1d_over_several_steps() -> None:
    result = run_lab("batchnorm", {"steps": 4, "momentum": 0.2})
    batch = torch.tensor(result["inputs"]["batch"], dtype=F64)
    assert close(result["mean"], batch.mean(0))
    assert close(result["variance_biased"], batch.var(0, unbiased=False))
    assert close(result["variance_unbiased"], batch.var(0, unbiased=True))
    layer = nn.BatchNorm1d(3, momentum=0.2, dtype=F64)
    for step in range(4):
        train = layer.train()(batch)
        assert close(result["running"][step]["running_mean"], layer.running_mean)
        assert close(result["running"][step]["running_var"], layer.running_var)
    assert close(result["train_output"], train.detach())
    assert close(result["eval_output"], layer.eval()(batch).detach())
    # the notes' m = 0.9 is PyTorch's momentum 0.1: a convention, not a slip
    assert all(e["convention"] for e in run_lab("batchnorm", None)["errata"])


# ---------------------------------------------------------------- byte-pair encoding


def reference_bpe(words: dict[str, int], merges: int) -> list[tuple[str, str]]:
    """Sennrich et al. (2016), Algorithm 1, on space-separated symbols: max(pairs, key=pairs.get), so a tie goes
    to the pair counted first."""
    vocab = {" ".join(word) + " </w>": count for word, count in words.items()}
    learned = []
    for _ in range(merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in vocab.items():
            symbols = word.split()
            for i in range(len(symbols) - 1):
                pairs[symbols[i], symbols[i + 1]] += count
        if not pairs:
            break
        best = max(pairs, key=pairs.get)
        learned.append(best)
        pattern = re.compile(r"(?<!\S)" + re.escape(" ".join(best)) + r"(?!\S)")
        vocab = {pattern.sub("".join(best), word): count for word, count in vocab.items()}
    return learned


def test_bpe_learns_sennrichs_merges_and_tokenizes_a_new_word() -> None:
    result = run_lab("bpe", None)
    expected = reference_bpe({"low": 5, "lower": 2, "newest": 6, "widest": 3}, 10)
    assert [tuple(m) for m in result["merges"]] == expected
    assert result["history"][0]["count"] == 9  # e-s, s-t and t-</w> each occur 6 + 3 times
    # the paper's own first merges: e s, es t, est </w>
    assert [tuple(m) for m in result["merges"][:3]] == [("e", "s"), ("es", "t"), ("est", "</w>")]
    assert "".join(result["tokens"]) == "lowest</w>"
    assert result["tokens"][0] == "low"
    assert len(result["vocabulary"]) == len(set("lowernewestwidest") | {"</w>"}) + 10


# ---------------------------------------------------------------- attention


@pytest.mark.parametrize(("causal", "heads"), [(False, 1), (True, 1), (True, 2)])
def test_attention_matches_scaled_dot_product_attention(causal: bool, heads: int) -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 4, generator=g, dtype=F64) for _ in range(3))
    result = run_lab("attention", {"q": q.tolist(), "k": k.tolist(), "v": v.tolist(), "causal": causal, "heads": heads})
    split = [t.view(4, heads, 4 // heads).transpose(0, 1) for t in (q, k, v)]
    expected = F.scaled_dot_product_attention(*split, is_causal=causal).transpose(0, 1).reshape(4, 4)
    assert close(result["output"], expected)
    scores = split[0] @ split[1].transpose(-1, -2)
    assert close(result["scores"], scores)
    weights = torch.softmax(
        (scores / math.sqrt(4 // heads)).masked_fill(torch.ones(4, 4).triu(1).bool() & causal, -math.inf), -1
    )
    assert close(result["weights"], weights)


def test_cross_attention_with_a_different_key_length() -> None:
    result = run_lab("attention", None)
    assert result["kind"] == "cross"
    assert len(result["weights"][0]) == 3 and len(result["weights"][0][0]) == 4
    # first query by hand: scores (1, 1, 2, 1) / sqrt(4), softmax
    exps = [math.exp(s / 2) for s in (1, 1, 2, 1)]
    assert close(result["weights"][0][0], [e / sum(exps) for e in exps])


# ---------------------------------------------------------------- positional encoding


def test_positional_encoding_formula_and_its_linear_shift() -> None:
    result = run_lab("positional-encoding", {"positions": 12, "d_model": 8, "shift": 3})
    for pos in (0, 5, 11):
        for i in range(4):  # the index starts at 0 (erratum)
            angle = pos / 10000 ** (2 * i / 8)
            assert result["table"][pos][2 * i] == pytest.approx(math.sin(angle), abs=1e-5)
            assert result["table"][pos][2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-5)
    m_k = torch.tensor(result["m_k"], dtype=F64)
    table = torch.tensor(result["table"], dtype=F64)
    assert close(table[:-3] @ m_k.T, table[3:], tol=1e-4)
    assert result["max_error"] < 1e-9


# ---------------------------------------------------------------- the quiz


def test_quiz_parameter_count() -> None:
    result = run_lab("parameters", None)
    assert (result["weights"], result["with_biases"]) == (22_100, 22_401)
    model = nn.Sequential(nn.Linear(10, 200), nn.Linear(200, 100), nn.Linear(100, 1))
    assert result["with_biases"] == sum(p.numel() for p in model.parameters())
    assert run_lab("parameters", {"sizes": [784, 128, 10]})["with_biases"] == 784 * 128 + 128 + 128 * 10 + 10


def test_quiz_memory_by_the_notes_formula_with_its_erratum() -> None:
    result = run_lab("memory", None)
    parameters_bytes = 22_401 * 4
    assert result["forward_bytes"] == parameters_bytes + 32 * (200 + 100 + 1) * 4
    # training adds the gradients (M) and Adam's two moments (2M)
    assert result["training_bytes"] == result["forward_bytes"] + 3 * parameters_bytes
    assert result["readable"]["M"] == "87.50 KiB"
    assert not result["errata"][0]["convention"]
    assert result["exact"]["train"] > result["exact"]["inference"] > parameters_bytes


def test_unknown_lab_and_bad_values_name_what_is_wrong() -> None:
    with pytest.raises(InputError, match="no lab 'nope'"):
        run_lab("nope", {})
    with pytest.raises(InputError) as info:
        run_lab("softmax", {"logits": [1, 2], "target": 5})
    assert "target 5" in str(info.value)
    with pytest.raises(InputError) as info:
        run_lab("pooling", {"matrix": [[1, 2], [3]]})
    assert info.value.field == "matrix"


# ---------------------------------------------------------------- bounded, finite, honest about whose example


def test_the_quiz_labs_count_the_widest_networks_without_allocating_them() -> None:
    """Twelve widths of 65,536 are 47 billion parameters (176 GiB in float32): counted on meta, not built."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sizes = [65_536] * 12
    result = run_lab("memory", {"sizes": sizes, "batch_size": 65_536})
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert run_lab("parameters", {"sizes": sizes})["with_biases"] == 11 * (65_536 * 65_536 + 65_536)
    assert result["exact"]["train"] > 11 * 65_536 * 65_536 * 4 * 4  # weights, gradients and Adam's two moments
    assert grown_mib < 200, grown_mib


def test_ceil_mode_explains_a_dropped_last_window_and_matches_torch() -> None:
    matrix = [[float(i + j) for j in range(5)] for i in range(5)]
    result = run_lab("pooling", {"matrix": matrix, "kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True})
    expected = F.max_pool2d(torch.tensor(matrix)[None, None], 2, 2, 1, ceil_mode=True)[0, 0]
    height = result["steps"][0]
    assert height["value"] == expected.shape[0] == 3
    assert "= 4, less 1" in height["formula"] and "drops it" in height["formula"]


def test_dropout_at_p_zero_drops_nothing_as_pytorch() -> None:
    x = [2.0, 8.0, -3.0, 11.0, 5.0]
    result = run_lab("dropout", {"p": 0})
    assert result["train_output"] == F.dropout(torch.tensor(x), 0.0, training=True).tolist() == x
    assert result["mask"] == [1, 1, 1, 1, 1] and "set aside" in result["notes"][0]


def test_an_erratum_about_the_notes_numbers_comes_only_with_those_numbers() -> None:
    sections = lambda values: [e["section"] for e in run_lab("dropout", values)["errata"]]  # noqa: E731
    assert "4.4 dropout example" in sections({})
    assert sections({"x": [1, 1, 1, 1, 1]}) == ["4.4 dropout at test"]  # the convention still applies
    assert run_lab("dropout", {})["example"] == "notes" and run_lab("dropout", {"p": 0.2})["example"] == "yours"
    assert run_lab("softmax", {})["example"] == "layerscope"


def test_labs_say_whose_example_they_open_with() -> None:
    notes = {name for name, lab in LABS.items() if lab.example == "notes"}
    assert notes == {"pooling", "dropout", "parameters"}  # the notes give numbers for these three only
    assert all(lab.example_source for lab in LABS.values())


@pytest.mark.parametrize(
    ("name", "values", "field"),
    [
        ("batchnorm", {"gamma": [1.0, 2.0]}, "gamma"),
        ("batchnorm", {"beta": [0.0, 0.0, 0.0, 0.0]}, "beta"),
        ("softmax", {"logits": [math.nan, 1.0]}, "logits.0"),
        ("dropout", {"x": [math.inf, 1.0]}, "x.0"),
        ("attention", {"causal": True, "q": [[1, 0, 1, 0]] * 5}, "causal"),  # 5 queries, 4 keys at the end
    ],
)
def test_bad_lab_inputs_are_refused_naming_the_field(name: str, values: dict, field: str) -> None:
    with pytest.raises(InputError) as info:
        run_lab(name, values)
    assert info.value.field == field


def test_the_head_error_names_the_width_that_does_not_divide() -> None:
    with pytest.raises(InputError, match="width of v, 4"):
        run_lab("attention", {"heads": 3, "q": [[1.0] * 6] * 3, "k": [[1.0] * 6] * 4, "v": [[1.0, 2.0, 3.0, 4.0]] * 4})


def test_overflow_is_written_as_text_so_the_json_stays_strict() -> None:
    import json

    result = run_lab("backprop", {"x": [1e300, 1e300], "activation": "relu"})
    json.loads(json.dumps(result, allow_nan=False))  # valid for a strict parser
    assert result["loss"] == "inf" and "written as text" in result["notes"][-1]


@pytest.mark.parametrize("alignment", ["start", "end"])
def test_causal_alignment_with_fewer_queries_than_keys(alignment: str) -> None:
    q = [[1.0, 0.0], [0.0, 1.0]]
    k = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]
    v = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]
    result = run_lab("attention", {"q": q, "k": k, "v": v, "causal": True, "alignment": alignment})
    qt, kt, vt = (torch.tensor(m, dtype=F64)[None] for m in (q, k, v))
    if alignment == "start":  # PyTorch's own is_causal aligns the queries at the start
        expected = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
    else:  # the last query sees every key, as a model generating with a KV cache
        expected = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=torch.ones(2, 4, dtype=torch.bool).tril(2))
    assert close(result["output"], expected[0])
    assert any("depends on where the queries sit" in note for note in result["notes"])
