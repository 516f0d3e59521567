"""How a step runs, as one typed model from the request to the engine.

``Step`` is the single definition of every option that changes what a memory
estimate traces: the mode (train, inference, generate), the optimizer, the
precision, the tokens generated, activation checkpointing and the parallel layout.
The API's request schemas inherit its fields (so each field's bounds and
description are written once, here), the CLI builds one from its flags, the
service keys its cache on ``Step.key()``, the worker jobs carry one, and the engine
reads it. A new option is a field here, a rule in ``check``, and the code that
uses it.

``StepSetup`` holds what applies to every step (precision, checkpointing, devices);
``StepFields`` adds what picks one step (mode, optimizer, tokens). The optimizer
overview, which sizes every mode and optimizer at once, takes a ``StepSetup``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .choices import (
    DEFAULT_OPTIMIZER,
    MAX_GPUS,
    MAX_NEW_TOKENS,
    OPTIMIZERS,
    DTypeName,
    KvCacheDtype,
    Mode,
    OffloadName,
    OptimizerName,
    PrecisionChoice,
    PrecisionName,
    ShardingName,
    resolve_precision,
)
from .errors import InputError


class Adapter(BaseModel):
    """A LoRA or DoRA adapter (PEFT's): the base model frozen, low-rank updates on the target layers trained."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["lora", "dora"] = Field("lora", description="lora, or dora (weight-decomposed LoRA).")
    r: int = Field(16, ge=1, le=4096, description="The rank of each update.")
    alpha: float = Field(32, gt=0, le=65536, description="The scale's numerator (the update is scaled by alpha/r).")
    target_modules: Literal["all-linear"] | tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = Field(
        "all-linear",
        description="Names (or last parts of names) of the linear layers to adapt, e.g. [q_proj, v_proj]; "
        "all-linear: every linear layer but the output head.",
        max_length=64,
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter's input.")


QuantizationMethod = Literal["nf4", "fp4", "int8", "fp8", "gptq", "awq", "compressed-tensors"]


class Quantization(BaseModel):
    """How the base model's linear weights are stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: QuantizationMethod = Field(
        description="nf4/fp4 (bitsandbytes 4-bit), int8 (LLM.int8()), fp8, gptq, awq, compressed-tensors."
    )
    bits: int = Field(4, ge=2, le=8, description="gptq, awq, compressed-tensors: bits per weight.")
    group_size: int = Field(
        128,
        ge=-1,
        le=65536,
        description="gptq, awq, compressed-tensors int4: weights per scale (-1: one group per input row).",
    )
    double_quant: bool = Field(True, description="nf4/fp4: quantize the absmaxes too (QLoRA's default).")
    block_size: int = Field(64, ge=16, le=4096, description="nf4/fp4: weights per absmax.")
    float_weights: bool = Field(False, description="compressed-tensors 8-bit: fp8 weights, not int8.")

    @model_validator(mode="after")
    def _stored_as_written(self) -> Quantization:
        allowed = {"gptq": (2, 3, 4, 8), "awq": (4,), "compressed-tensors": (4, 8)}.get(self.method)
        if allowed and self.bits not in allowed:
            raise ValueError(f"{self.method} stores {', '.join(map(str, allowed))}-bit weights, not {self.bits}")
        if self.group_size == 0:
            raise ValueError("group_size is a number of weights (or -1 for one group per row), not 0")
        return self


class StepSetup(BaseModel):
    """What applies to every step of a selection: how parameters are stored and computed, and on how many devices."""

    model_config = ConfigDict(extra="forbid")

    precision: PrecisionName | None = Field(
        None,
        description="fp32/bf16/fp16/fp64: parameters and activations in that dtype; amp-*: fp32 parameters under "
        "autocast. Omitted: from dtype (fp32 when neither is given).",
    )
    dtype: DTypeName | None = Field(
        None, description="Parameter dtype; leave it out and give precision instead (they must agree if both given)."
    )
    checkpointing: bool = Field(False, description="train: recompute each repeated block in backward.")
    gpus: int = Field(
        1, ge=1, le=MAX_GPUS, description="Devices of a data-parallel training step; batch_size is then per device."
    )
    sharding: ShardingName = Field("fsdp", description="With gpus > 1: ddp, zero2 or fsdp (GET /api/choices).")
    tp: int = Field(
        1, ge=1, le=64, description="Tensor-parallel GPUs (Megatron column/row split, the model's own plan)."
    )
    pp: int = Field(
        1,
        ge=1,
        le=64,
        description="Pipeline stages, one GPU each (a decoder's blocks split evenly; the 1F1B schedule); batch_size "
        "is then the batch one pipeline step takes.",
    )
    microbatches: int | None = Field(
        None, ge=1, le=256, description="With pp > 1: micro-batches the batch is cut into (omitted: pp of them)."
    )
    offload: OffloadName = Field(  # type: ignore[valid-type]
        "none",
        description="With gpus > 1 and zero2 or fsdp: what lives in host memory: none, optimizer (ZeRO-Offload: "
        "optimizer state, gradient shards and the step) or all (FSDP2 CPUOffloadPolicy: parameter shards too).",
    )
    quantization: Quantization | None = Field(
        None,
        description="Store the base's linear weights quantized (nf4, fp4, int8, fp8, gptq, awq, compressed-tensors), "
        "counted from each format's own layout. Omitted: a Hugging Face config's quantization_config, if any.",
    )
    adapter: Adapter | None = Field(
        None, description="Fine-tune with a LoRA or DoRA adapter (PEFT): the base frozen, the adapter trained."
    )


class StepFields(StepSetup):
    """A step's setup, and which step: the mode, the optimizer of a training step, the tokens of a generation."""

    mode: Mode = Field("train", description="train (one training step), inference (one forward) or generate.")
    optimizer: OptimizerName = Field(DEFAULT_OPTIMIZER, description="Optimizer of a training step (GET /api/choices).")
    new_tokens: int = Field(
        32, ge=1, le=MAX_NEW_TOKENS, description="generate: tokens generated after the prompt (input.shape: [T])."
    )
    kv_cache_dtype: KvCacheDtype = Field(  # type: ignore[valid-type]
        "auto",
        description="generate: how the KV cache stores keys and values: auto (the compute dtype), fp8 or int8 (one "
        "byte per element and a scale per layer; attention reads each layer dequantized).",
    )


STEP_FIELDS = tuple(StepFields.model_fields)


class Step(StepFields):
    """One step, checked: its options agree with each other, and its precision is resolved.

    Build it with ``Step.of(...)`` (keyword options, errors as ``InputError`` naming the
    field) or ``Step.model_validate``. ``key()`` is the same for every spelling of the
    same step (dtype or precision, options that do not apply left out).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def of(cls, **options: Any) -> Step:
        """A checked step from keyword options; a bad or unknown option raises InputError naming it."""
        try:
            step = cls.model_validate(options)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            field = ".".join(str(p) for p in first["loc"]) or None
            cause = (first.get("ctx") or {}).get("error")
            if first["type"] == "extra_forbidden":
                raise InputError(f"unknown option {field!r}; a step takes {', '.join(STEP_FIELDS)}", field) from None
            raise InputError(f"{field}: {cause or first['msg']}", field) from None
        step.check()
        return step

    def check(self) -> None:
        """Options that contradict each other, refused with the field at fault (before any work)."""
        self.precision_choice  # noqa: B018  (dtype and precision must agree)
        if self.checkpointing and self.mode != "train":
            raise InputError("checkpointing applies to training steps (it recomputes in backward)", "checkpointing")
        if self.gpus > 1 and self.mode != "train":
            raise InputError(
                "gpus > 1 sizes data-parallel training (DDP, ZeRO-2, FSDP); a forward across devices is tensor "
                "parallel: give tp instead",
                "gpus",
            )
        if self.kv_cache_dtype != "auto" and not self.generates:
            raise InputError(
                "kv_cache_dtype applies to generation (mode generate): the cache it stores", "kv_cache_dtype"
            )
        if self.offload != "none" and not (self.trains and self.gpus > 1 and self.sharding != "ddp"):
            raise InputError(
                "offload moves a sharded training step's state to the host: it needs mode train, gpus > 1 and "
                "sharding zero2 or fsdp",
                "offload",
            )
        refusal = OPTIMIZERS[self.optimizer].not_on_shards
        if self.trains and self.gpus > 1 and self.sharding != "ddp" and refusal:
            raise InputError(f"optimizer {self.optimizer} with sharding {self.sharding}: {refusal}", "optimizer")
        if self.tp > 1 and self.gpus > 1:
            raise InputError(
                f"tp={self.tp} with gpus={self.gpus} (2-D: tensor parallel inside data parallel) is not sized yet: "
                "size one tensor-parallel group with gpus 1",
                "tp",
            )
        if self.microbatches is not None and self.pp == 1:
            raise InputError("microbatches applies to pipeline parallelism: give pp > 1 too", "microbatches")
        if self.pp > 1:
            self._check_pipeline()
        if self.tp > 1 and self.generates:
            raise InputError(
                "tensor-parallel generation is not sized yet: size the prompt's forward (mode inference)", "tp"
            )
        if self.tp > 1 and (self.quantization is not None or self.adapter is not None):
            raise InputError("tensor parallelism with quantized weights or an adapter is not sized yet", "tp")

    def _check_pipeline(self) -> None:
        if not self.trains:
            raise InputError(
                "pipeline parallelism is sized for training steps (the 1F1B schedule): use mode train", "pp"
            )
        if self.tp > 1 or self.gpus > 1:
            raise InputError(
                f"pp={self.pp} with tp={self.tp} and gpus={self.gpus}: pipeline stages combined with tensor or data "
                "parallelism are not sized yet: size the pipeline alone",
                "pp",
            )
        if self.quantization is not None or self.adapter is not None:
            raise InputError("pipeline parallelism with quantized weights or an adapter is not sized yet", "pp")
        if self.pipeline_microbatches < self.pp:
            raise InputError(
                f"microbatches={self.pipeline_microbatches} is fewer than pp={self.pp}: 1F1B needs at least one "
                "micro-batch per stage",
                "microbatches",
            )

    @property
    def pipeline_microbatches(self) -> int:
        """Micro-batches of a pipeline step (pp of them unless given)."""
        return self.microbatches if self.microbatches is not None else self.pp

    @property
    def precision_choice(self) -> PrecisionChoice:
        return resolve_precision(self.precision, self.dtype)

    @property
    def param_dtype(self) -> torch.dtype:
        return self.precision_choice.param_dtype

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return self.precision_choice.autocast_dtype

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the matrix products run in: autocast's, else the parameters'."""
        return self.autocast_dtype or self.param_dtype

    @property
    def trains(self) -> bool:
        return self.mode == "train"

    @property
    def generates(self) -> bool:
        return self.mode == "generate"

    @property
    def sharded(self) -> bool:
        return self.gpus > 1

    @property
    def used_optimizer(self) -> OptimizerName | None:
        """The optimizer, when the step trains."""
        return self.optimizer if self.trains else None

    def canonical(self) -> dict[str, Any]:
        """The options that decide the step, defaults of options that do not apply left out."""
        values: dict[str, Any] = {"mode": self.mode, "precision": self.precision_choice.name}
        if self.trains:
            values["optimizer"] = self.optimizer
            if self.checkpointing:
                values["checkpointing"] = True
            if self.sharded:
                values.update(gpus=self.gpus, sharding=self.sharding)
                if self.offload != "none":
                    values["offload"] = self.offload
        if self.generates:
            values["new_tokens"] = self.new_tokens
            if self.kv_cache_dtype != "auto":
                values["kv_cache_dtype"] = self.kv_cache_dtype
        if self.tp > 1:
            values["tp"] = self.tp
        if self.pp > 1:
            values.update(pp=self.pp, microbatches=self.pipeline_microbatches)
        if self.adapter is not None:
            values["adapter"] = self.adapter.model_dump(mode="json")
        if self.quantization is not None:
            values["quantization"] = self.quantization.model_dump(mode="json")
        return values

    def resolved(self) -> Step:
        """The same step in its canonical spelling (precision named, dtype left out)."""
        return Step.model_validate(self.canonical())

    def key(self) -> str:
        """A cache key: equal for equal steps, whatever the spelling."""
        return json.dumps(self.canonical(), sort_keys=True)

    def replace(self, **changes: Any) -> Step:
        """A checked copy with some options changed."""
        return Step.of(**{**self.model_dump(), **changes})

    @classmethod
    def split(cls, kwargs: dict[str, Any]) -> tuple[Step, dict[str, Any]]:
        """(the step, the other keyword arguments) from a call's keywords: ``step=`` or the step's own options."""
        rest = dict(kwargs)
        given = rest.pop("step", None)
        options = {name: rest.pop(name) for name in STEP_FIELDS if name in rest}
        if given is not None and options:
            raise InputError(f"give step or its options ({', '.join(options)}), not both", next(iter(options)))
        return (given if given is not None else cls.of(**options)), rest

    def autocast(self, device: torch.device) -> Any:
        """The autocast context of the precision (a null context without one)."""
        import contextlib

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)
