"""Quantized weights: each format's layout against the tensors its own library stores (bitsandbytes, run here on
the CPU) or a published checkpoint holds (GPTQ, AWQ, fp8, compressed-tensors), and QLoRA's estimate."""

from __future__ import annotations

import warnings

import pytest
import torch

from app.engine import estimate_memory
from app.engine.errors import InputError
from app.engine.memory.quantization import layout, layout_bytes
from app.engine.step import Quantization

from . import tiny_models


def _bnb_4bit_tensors(weight: torch.Tensor, quant_type: str, double_quant: bool) -> list[torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from bitsandbytes import functional as bnb

    packed, state = bnb.quantize_4bit(weight, blocksize=64, quant_type=quant_type, compress_statistics=double_quant)
    tensors = [packed, state.absmax, state.code]
    if double_quant:
        tensors += [state.offset, state.state2.absmax, state.state2.code]
    return tensors


@pytest.mark.parametrize("shape", [(4096, 4096), (14336, 4096), (100, 70), (8, 24)])
@pytest.mark.parametrize(("quant_type", "double_quant"), [("nf4", True), ("nf4", False), ("fp4", True)])
def test_4bit_layout_is_what_bitsandbytes_stores(shape, quant_type, double_quant) -> None:
    """bitsandbytes' own quantize_4bit on this CPU: every tensor its QuantState keeps, shape and dtype."""
    tensors = _bnb_4bit_tensors(torch.zeros(shape, dtype=torch.bfloat16), quant_type, double_quant)
    stored = layout(Quantization(method=quant_type, double_quant=double_quant), *shape)
    assert [(tuple(t.shape), t.dtype) for t in tensors] == [
        (s.shape, s.dtype) for s in sorted(stored, key=lambda s: _BNB_ORDER.index(s.name))
    ]
    assert layout_bytes(Quantization(method=quant_type, double_quant=double_quant), *shape) == sum(
        t.untyped_storage().nbytes() for t in tensors
    )


_BNB_ORDER = ["weight", "absmax", "code", "offset", "nested_absmax", "nested_code"]


def test_int8_layout_is_what_bitsandbytes_stores() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes as bnb

    layer = bnb.nn.Linear8bitLt(320, 384, bias=False, has_fp16_weights=False).to("cpu")
    assert layout_bytes(Quantization(method="int8"), 384, 320) == (
        layer.weight.untyped_storage().nbytes() + layer.weight.SCB.untyped_storage().nbytes()
    )


# Published checkpoints' tensors for one 4,096 x 4,096 (or 8,192 x 8,192) projection, read from their safetensors
# headers: TheBloke/Llama-2-7B-GPTQ and -AWQ (4-bit, group 128), Qwen/Qwen3-8B-FP8 (128 x 128 blocks), and
# neuralmagic's Meta-Llama-3.1-70B-Instruct-quantized.w8a8 (compressed-tensors, int8 per channel).
PUBLISHED = [
    (
        Quantization(method="gptq"),
        (4096, 4096),
        {
            "qweight": ((512, 4096), torch.int32),
            "qzeros": ((32, 512), torch.int32),
            "scales": ((32, 4096), torch.float16),
            "g_idx": ((4096,), torch.int32),
        },
    ),
    (
        Quantization(method="awq"),
        (4096, 4096),
        {
            "qweight": ((4096, 512), torch.int32),
            "qzeros": ((32, 512), torch.int32),
            "scales": ((32, 4096), torch.float16),
        },
    ),
    (
        Quantization(method="fp8"),
        (4096, 4096),
        {"weight": ((4096, 4096), torch.float8_e4m3fn), "weight_scale_inv": ((32, 32), torch.float32)},
    ),
    (
        Quantization(method="compressed-tensors", bits=8, group_size=-1),
        (8192, 8192),
        {"weight": ((8192, 8192), torch.int8), "weight_scale": ((8192, 1), torch.bfloat16)},
    ),
]


@pytest.mark.parametrize(("quantization", "shape", "published"), PUBLISHED)
def test_layouts_are_the_published_checkpoints(quantization, shape, published) -> None:
    assert {s.name: (s.shape, s.dtype) for s in layout(quantization, *shape)} == published


def test_qlora_trains_only_the_adapters_and_holds_the_packed_base() -> None:
    """A tiny Llama in nf4 with LoRA r=8: the trainable parameters are the adapters' (r x (in + out) per target
    layer), the quantized bytes are the layouts', and a forward in bf16 holds less than the bf16 base."""
    config = tiny_models.LLAMA
    hf = config["hf_config"]
    options = dict(input_size=(32,), batch_size=2, precision="bf16")
    qlora = estimate_memory(
        "huggingface", config, optimizer="adamw", quantization={"method": "nf4"}, adapter={"r": 8}, **options
    )
    hidden, inter, kv = hf["hidden_size"], hf["intermediate_size"], hf["num_key_value_heads"] * 16
    shapes = [(hidden, hidden), (kv, hidden), (kv, hidden), (hidden, hidden), (inter, hidden), (inter, hidden)]
    shapes.append((hidden, inter))
    layers = hf["num_hidden_layers"]
    assert qlora.trainable_parameters == layers * sum(8 * (o + i) for o, i in shapes)
    nf4 = Quantization(method="nf4")
    assert qlora.quantized_weight_bytes == layers * sum(layout_bytes(nf4, o, i) for o, i in shapes)
    assert qlora.quantized_weights == layers * sum(o * i for o, i in shapes)
    plain = estimate_memory("huggingface", config, mode="inference", **options)
    packed = estimate_memory("huggingface", config, mode="inference", quantization={"method": "nf4"}, **options)
    assert packed.breakdown.weights < plain.breakdown.weights


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"quantization": {"method": "int3"}}, "quantization.method"),
        ({"quantization": {"method": "awq", "bits": 3}}, "quantization"),
        ({"quantization": {"method": "nf4"}, "measure": True}, "measure"),
    ],
)
def test_bad_quantization_names_the_field(options, field) -> None:
    with pytest.raises(InputError) as caught:
        estimate_memory("huggingface", tiny_models.LLAMA, input_size=(16,), mode="inference", **options)
    assert caught.value.field == field


def test_a_config_s_quantization_config_is_read() -> None:
    """A config whose checkpoint is GPTQ 4-bit is sized as one; an unknown quant_method is refused, naming it."""
    gptq = {"quant_method": "gptq", "bits": 4, "group_size": 32}
    config = {"hf_config": {**tiny_models.LLAMA["hf_config"], "quantization_config": gptq}}
    report = estimate_memory("huggingface", config, input_size=(16,), mode="inference")
    assert report.quantization["method"] == "gptq" and report.quantization["group_size"] == 32
    bad = {"hf_config": {**tiny_models.LLAMA["hf_config"], "quantization_config": {"quant_method": "exl9"}}}
    with pytest.raises(InputError, match="exl9") as caught:
        estimate_memory("huggingface", bad, input_size=(16,), mode="inference")
    assert caught.value.field == "config.quantization_config"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_8bit_adamw_state_is_what_bitsandbytes_keeps(dtype) -> None:
    """bitsandbytes' own AdamW8bit and PagedAdamW8bit, stepped on this CPU, against the layout the estimates use:
    the same state tensors, shapes and dtypes, the same bytes (shared quantization maps counted once)."""
    from app.engine.memory.runner import optimizer_state_tensors, storage_bytes
    from app.engine.optim8bit import AdamW8bitLayout, PagedAdamW8bitLayout

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes as bnb

    shapes = [(4096, 512), (100,), (64, 64), (4095,), (300, 301)]

    def stepped(factory):
        params = [torch.nn.Parameter(torch.zeros(shape, dtype=dtype)) for shape in shapes]
        for param in params:
            param.grad = torch.zeros_like(param)
        optimizer = factory(params, lr=1e-3)
        optimizer.step()
        return params, optimizer

    for theirs, ours in ((bnb.optim.AdamW8bit, AdamW8bitLayout), (bnb.optim.PagedAdamW8bit, PagedAdamW8bitLayout)):
        (real_params, real), (layout_params, mine) = stepped(theirs), stepped(ours)
        for a, b in zip(real_params, layout_params, strict=True):
            tensors = lambda state: {k: (tuple(v.shape), v.dtype) for k, v in state.items() if torch.is_tensor(v)}  # noqa: E731
            assert tensors(real.state[a]) == tensors(mine.state[b])
        assert storage_bytes(optimizer_state_tensors(real)) == storage_bytes(optimizer_state_tensors(mine))


def test_fine_tuning_optimizers_in_a_training_estimate() -> None:
    """8-bit AdamW keeps a quarter of AdamW's fp32 moments (plus absmaxes), Adafactor far less."""
    options = dict(input_size=(32,), batch_size=2)
    state = {
        name: estimate_memory("huggingface", tiny_models.LLAMA, optimizer=name, **options).breakdown.optimizer_state
        for name in ("adamw", "adamw-8bit", "paged-adamw-8bit", "adafactor")
    }
    assert state["adamw-8bit"] == state["paged-adamw-8bit"] < state["adamw"] / 3
    assert state["adafactor"] < state["adamw-8bit"]
