"""estimate_memory(): exact bytes on fake tensors, checked by hand and against real runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from app.engine import InputError, MemoryBudgetError, estimate_memory

ROOT = Path(__file__).resolve().parents[3]
TWO_LAYER = {"input_dim": 10, "hidden": [20], "output_dim": 5}
BATCH = 4


def test_two_layer_mlp_by_hand() -> None:
    report = estimate_memory("mlp", TWO_LAYER, batch_size=BATCH, optimizer="adam")
    weights = (10 * 20 + 20 + 20 * 5 + 5) * 4  # 1,300 bytes of float32
    adam_state = 2 * weights + 4 * 4  # exp_avg, exp_avg_sq, and a float32 step counter per parameter tensor
    assert report.persistent_bytes == weights + weights + adam_state
    relu_output = BATCH * 20 * 4  # saved by ReLU, and reused (same storage) by the second Linear
    log_softmax = BATCH * 5 * 4  # saved by cross-entropy's log-softmax
    nll_total_weight = 4  # one float32 scalar saved by nll_loss
    assert report.saved_activation_bytes == relu_output + log_softmax + nll_total_weight
    by_layer = {row.path: row.saved_bytes for row in report.layers}
    assert by_layer["layers.0.activation"] == relu_output
    assert by_layer["(loss)"] == log_softmax + nll_total_weight
    assert report.breakdown.weights == weights
    assert report.breakdown.inputs == BATCH * 10 * 4 + BATCH * 8  # float inputs and int64 labels


@pytest.mark.parametrize(("optimizer", "state_copies"), [("sgd", 0), ("sgd-momentum", 1), ("adam", 2), ("adamw", 2)])
def test_optimizer_state_sizes(optimizer: str, state_copies: int) -> None:
    report = estimate_memory("mlp", TWO_LAYER, batch_size=BATCH, optimizer=optimizer)
    weights = 1300
    steps = 16 if optimizer.startswith("adam") else 0
    assert report.persistent_bytes == 2 * weights + state_copies * weights + steps


def test_inference_holds_no_gradients_or_saved_tensors() -> None:
    report = estimate_memory("mlp", TWO_LAYER, batch_size=BATCH, mode="inference")
    assert report.saved_activation_bytes == 0
    assert report.breakdown.gradients == report.breakdown.optimizer_state == 0
    assert report.optimizer is None
    assert report.phase == "forward"


@pytest.mark.parametrize(
    ("name", "config", "kwargs"),
    [
        ("mlp", None, {"batch_size": 64}),
        ("lenet5", None, {"batch_size": 8, "optimizer": "sgd-momentum"}),
        ("resnet", None, {"batch_size": 2, "precision": "amp-bf16"}),
        ("gpt", {"preset": "nano"}, {"batch_size": 2, "input_size": (64,), "precision": "bf16"}),
        ("transformer", {"preset": "tiny"}, {"batch_size": 2, "input_size": (16, 12)}),
        ("vit", {"preset": "vit_tiny_cifar"}, {"batch_size": 2, "mode": "inference"}),
        ("sequential", None, {"batch_size": 3}),
    ],
)
def test_breakdown_sums_to_the_peak(name: str, config: dict | None, kwargs: dict) -> None:
    report = estimate_memory(name, config, **kwargs)
    assert sum(report.breakdown.model_dump().values()) == report.peak_bytes > 0
    assert report.phase in ("forward", "backward", "optimizer")
    assert report.step_flops > 0
    # the weights at the peak are the model's parameters, counted by PyTorch itself on a meta build
    import models

    built = models.build_model(name, config)
    itemsize = {"bf16": 2}.get(kwargs.get("precision", "fp32"), 4)
    params = {id(p): p.numel() for p in built.parameters()}  # tied weights once
    assert report.breakdown.weights == sum(params.values()) * itemsize


@pytest.mark.parametrize(("name", "config"), [("alexnet", None), ("resnet", {"depth": 18})])
def test_fake_and_real_saved_activations_agree_to_the_byte(name: str, config: dict | None) -> None:
    report = estimate_memory(name, config, batch_size=2, optimizer="sgd", measure=True)
    assert report.measured_saved_activation_bytes == report.saved_activation_bytes > 0
    assert report.measured_peak_bytes is not None
    assert abs(report.error_percent or 0) < 3


def test_measured_peak_matches_on_a_small_cnn() -> None:
    report = estimate_memory("lenet5", {"variant": "modern"}, batch_size=16, mode="inference", measure=True)
    assert abs(report.error_percent or 0) < 5


def test_memory_budget_refuses_real_runs() -> None:
    with pytest.raises(MemoryBudgetError) as info:
        estimate_memory("alexnet", batch_size=2, measure=True, budget_bytes=10 * 2**20)
    assert "budget" in str(info.value)


def test_textbook_formula_is_shown_beside_the_exact_figure() -> None:
    report = estimate_memory("alexnet", batch_size=8, optimizer="adam")
    formula = report.formula
    assert formula.params_bytes == 62_378_344 * 4  # AlexNet's published count, in float32
    assert formula.layers == 23  # 15 feature layers, flatten, 7 classifier layers
    # m x layers: one sample's outputs of every layer, from the sizes the course works out by hand (55, 27, 13, 6)
    convs = 3 * 96 * 55**2 + 96 * 27**2 + 3 * 256 * 27**2 + 256 * 13**2  # conv, ReLU, LRN; pool (twice)
    convs += 2 * 384 * 13**2 * 2 + 2 * 256 * 13**2 + 256 * 6**2  # conv3-5 with their ReLUs, pool3
    dense = 9216 * 2 + 4096 * 5 + 1000  # flatten, dropout; fc1, ReLU, dropout, fc2, ReLU; fc3
    assert formula.per_sample_layer_bytes * formula.layers == pytest.approx((convs + dense) * 4)
    assert any("M + B*m*layers" in line for line in formula.lines)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "eval"}, "mode"),
        ({"optimizer": "lamb"}, "optimizer"),
        ({"precision": "fp8"}, "precision"),
        ({"dtype": "float16", "precision": "bf16"}, "dtype"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError) as info:
        estimate_memory("mlp", **kwargs)
    assert info.value.field == field


def test_user_module_is_estimated_on_a_meta_copy() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = estimate_memory(model, input_size=(8,), batch_size=5, optimizer="sgd")
    assert report.breakdown.weights == sum(p.numel() for p in model.parameters()) * 4
    for name, param in model.named_parameters():  # still the caller's real CPU parameters, values untouched
        assert type(param) is nn.Parameter and param.device.type == "cpu", name
        assert torch.equal(param, before[name]) and param.grad is None, name


def test_tied_weights_are_counted_once() -> None:
    report = estimate_memory("gpt", {"preset": "nano"}, batch_size=1, input_size=(32,), mode="inference")
    params = 891_648
    assert report.breakdown.weights == params * 4


def test_seven_billion_gpt_estimate_allocates_nothing() -> None:
    script = textwrap.dedent(
        """
        import json, resource
        from app.engine import estimate_memory
        estimate_memory("mlp")  # warm imports before the baseline
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report = estimate_memory("gpt", {"preset": "gpt3-6.7b"}, batch_size=1, input_size=(512,))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"peak": report.peak_bytes, "weights": report.breakdown.weights, "grew_kib": peak - base}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["weights"] == 6_658_404_352 * 4
    assert data["peak"] > 4 * data["weights"]  # weights, gradients, two Adam moments
    assert data["grew_kib"] < 1024 * 1024


def test_step_flops_match_the_summary() -> None:
    from app.engine import summarize

    forward = summarize("resnet", batch_size=2).totals.flops
    inference = estimate_memory("resnet", batch_size=2, mode="inference")
    training = estimate_memory("resnet", batch_size=2, optimizer="sgd")
    assert inference.step_flops == forward
    assert 2 * forward < training.step_flops < 3 * forward  # backward costs about twice the forward


TINY_LLAMA = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "num_hidden_layers": 4,
    "vocab_size": 2000,
    "max_position_embeddings": 2048,
}


@pytest.mark.parametrize(("tokens", "padded"), [(64, False), (256, False), (1024, False), (256, True)])
def test_a_hugging_face_step_on_its_own_loss_with_a_mask_matches_a_real_step(tokens: int, padded: bool) -> None:
    """transformers skips building the causal mask when the attention mask pads nothing (it reads the values);
    the estimate decides the same way, so the real step's peak is met at every length."""
    torch.manual_seed(0)
    ids = torch.randint(0, 2000, (8, tokens))
    mask = torch.ones(8, tokens, dtype=torch.long)
    if padded:
        mask[:, -16:] = 0  # the last 16 tokens of every sequence are padding: the real run builds the mask
    inputs = {"input_ids": ids, "labels": ids, "attention_mask": mask}
    report = estimate_memory(
        "huggingface", {"hf_config": TINY_LLAMA}, input_data=inputs, optimizer="adamw", measure=True
    )
    assert abs(report.error_percent) < 0.5, report.error_percent


OPTIMIZER_CASES = [
    ("mlp", None, {"batch_size": 8}),
    ("resnet", {"depth": 18}, {"batch_size": 2}),
    ("gpt", {"preset": "nano"}, {"batch_size": 2, "input_size": (64,), "precision": "bf16"}),
    ("transformer", {"preset": "tiny"}, {"batch_size": 2, "input_size": (16, 12), "precision": "amp-bf16"}),
    ("huggingface", {"hf_config": TINY_LLAMA}, {"batch_size": 2, "input_size": (32,), "checkpointing": True}),
]


@pytest.mark.parametrize(("name", "config", "kwargs"), OPTIMIZER_CASES, ids=[c[0] for c in OPTIMIZER_CASES])
def test_one_forward_and_backward_for_every_optimizer_gives_the_traced_step(name, config, kwargs) -> None:
    """The optimizer's state and step, traced over the parameters alone, added to the forward and backward traced
    once: the same report as tracing the whole step with that optimizer (the reference), for each optimizer."""
    from app.engine.choices import OPTIMIZERS
    from app.engine.memory.reference import reference_traces

    for optimizer in OPTIMIZERS:
        fast = estimate_memory(name, config, optimizer=optimizer, **kwargs)
        with reference_traces():
            reference = estimate_memory(name, config, optimizer=optimizer, **kwargs)
        assert fast.model_dump() == reference.model_dump(), optimizer
