"""Fine-tuning with adapters (LoRA and DoRA from PEFT) and quantized bases (QLoRA), on the model the estimate
traces and the one a real run measures, the same call for both.

``apply_adapter`` injects PEFT's own adapter layers (``peft.inject_adapter_in_model``)
into a model already in its parameter dtype, as a fine-tuning script does after
loading the base: the base's parameters are frozen, the adapters' are trained, and
PEFT keeps the adapters in float32 under a bf16 or fp16 base (its
``autocast_adapter_dtype``), which the estimate therefore counts too. ``"all-linear"``
is PEFT's own rule: every linear layer but a language model's output head.
"""

from __future__ import annotations

from torch import nn

from ..errors import InputError
from ..step import Adapter, Step
from .quantization import quantize_linears


def prepare_weights(model: nn.Module, step: Step) -> None:
    """The base's weights as the step stores them (quantized, with ``step.quantization``), then the adapter, in
    the order a QLoRA script applies them; adapters on a quantized base are kept in the parameters' dtype."""
    if step.quantization is not None:
        quantize_linears(model, step.quantization)
    if step.adapter is not None:
        apply_adapter(model, step.adapter)
        if step.quantization is not None:
            for name, param in model.named_parameters():
                if "lora_" in name:
                    param.data = param.data.to(step.param_dtype)


def apply_adapter(model: nn.Module, adapter: Adapter) -> nn.Module:
    """``model`` with ``adapter``'s layers injected (in place) and only they trainable."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = adapter.target_modules
    config = LoraConfig(
        r=adapter.r,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=targets,
        use_dora=adapter.kind == "dora",
        bias="none",
    )
    if targets != "all-linear":
        _check_targets(model, targets)
    try:
        inject_adapter_in_model(config, model)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise InputError(f"adapter: {exc}", "adapter.target_modules") from None
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name
    if not any(p.requires_grad for p in model.parameters()):
        raise InputError("adapter: no layer of this model took an adapter", "adapter.target_modules")
    return model


def _check_targets(model: nn.Module, targets: list[str]) -> None:
    """Every target names a linear (or GPT-2 Conv1D) layer of the model, by its name or its name's last part."""
    linear = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"
    }
    missing = [t for t in targets if not any(name == t or name.endswith(f".{t}") for name in linear)]
    if missing:
        known = sorted({name.rsplit(".", 1)[-1] for name in linear})
        raise InputError(
            f"adapter: {', '.join(map(repr, missing))} name no linear layer of this model; its linear layers are "
            f"{', '.join(known[:24])}{'...' if len(known) > 24 else ''}",
            "adapter.target_modules",
        )


def adapter_note(model: nn.Module, adapter: Adapter) -> str:
    """What the adapter adds and trains, for a report's notes."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return (
        f"{adapter.kind.upper()} r={adapter.r}, alpha={adapter.alpha:g} on "
        f"{'every linear layer' if adapter.target_modules == 'all-linear' else ', '.join(adapter.target_modules)} "
        f"(PEFT): {trainable:,} trainable parameters, {frozen:,} frozen; the optimizer's state is the adapters' "
        "only, and the frozen base still saves the inputs its layers need for the adapters' gradients"
    )
