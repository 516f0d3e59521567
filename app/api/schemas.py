"""Request and error bodies of the REST API (responses are the engine's typed reports).

The lists of choices (dtypes, precisions, optimizers, modes) are the engine's
(``app.engine.choices``), and a step's options are the engine's ``Step`` fields
(``app.engine.step``): requests inherit them, so none is spelled out here.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from ..engine.choices import DTypeName, InputDTypeName, KvCacheDtype, PrecisionName
from ..engine.gpus import DEFAULT_GPU, GPUS
from ..engine.live.runs import MAX_LAYERS
from ..engine.step import Quantization, StepFields, StepSetup
from ..engine.tracing.selection import MAX_BATCH

STRICT = ConfigDict(extra="forbid", strict=True)


class TensorInput(BaseModel):
    """One input tensor, batch first: a positional argument, or the keyword argument ``name``."""

    model_config = STRICT

    name: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", description="Keyword argument (e.g. attention_mask)."
    )
    shape: list[StrictInt] = Field(
        max_length=6,
        description="The whole tensor's shape, batch first, e.g. [4, 512].",
        json_schema_extra={"items": {"type": "integer", "minimum": 0, "maximum": 1048576}},
    )
    dtype: InputDTypeName = Field("float32", description="int64 for token ids, bool or int64 for masks.")


class InputSpec(BaseModel):
    """The batch fed to the model: a batch size and one sample's shape, or every input tensor spelled out."""

    model_config = STRICT

    batch_size: StrictInt = Field(1, ge=1, le=MAX_BATCH, description="Samples in the batch.")
    shape: list[StrictInt] | None = Field(
        None,
        min_length=1,
        max_length=5,
        description="One sample's shape without the batch dimension: [3, 224, 224] for images, [T] for token "
        "models, [S, T] for the encoder-decoder. Omitted: the architecture's default input.",
        json_schema_extra={"items": {"type": "integer", "minimum": 1, "maximum": 65536}},
    )
    tensors: list[TensorInput] | None = Field(
        None,
        min_length=1,
        max_length=16,
        description="Instead of shape: every argument of the forward, e.g. [{name: input_ids, shape: [4, 512], "
        "dtype: int64}, {name: attention_mask, ...}]; the batch size is then the first tensor's first dimension.",
    )

    @field_validator("tensors")
    @classmethod
    def _not_both(cls, tensors: list[TensorInput] | None, info: Any) -> list[TensorInput] | None:
        if tensors is not None and info.data.get("shape") is not None:
            raise ValueError("give shape or tensors, not both")
        return tensors


class SummaryRequest(BaseModel):
    """An architecture, its config, an input and a dtype."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "architecture": "resnet",
                    "config": {"depth": 50},
                    "input": {"batch_size": 32, "shape": [3, 224, 224]},
                    "dtype": "float32",
                }
            ]
        },
    )

    architecture: str = Field(description="A name from GET /api/architectures.", max_length=64)
    config: dict[str, Any] | None = Field(
        None, description="Config fields of the architecture (see its config_schema); 'preset' picks a preset."
    )
    input: InputSpec = Field(default_factory=InputSpec)
    dtype: DTypeName = Field("float32", description="Parameter and input dtype.")


class MemoryRequest(StepFields, SummaryRequest):
    """A selection plus how its step runs (the engine's ``Step``: mode, optimizer, precision...), and whether to
    measure it."""

    model_config = STRICT

    measure: StrictBool = Field(
        False, description="Also run the step for real on the server's device (refused above the memory budget)."
    )


GpuName = Literal[tuple(GPUS)]  # type: ignore[valid-type]


class SizingRequest(StepFields, SummaryRequest):
    """A selection, how its step runs, and the GPU to size it for."""

    model_config = STRICT

    gpu: GpuName = Field(DEFAULT_GPU, description="A GPU from GET /api/gpus.")


class StepTimeRequest(SizingRequest):
    """A selection and a GPU, with the roofline's two assumptions."""

    utilization: float = Field(0.4, ge=0.01, le=1, description="Share of the GPU's peak FLOP/s reached.")
    bandwidth_efficiency: float = Field(0.8, ge=0.01, le=1, description="Share of its memory bandwidth reached.")


class ServingRequest(BaseModel):
    """A token model, how its weights are stored, a GPU, and how vLLM would serve it there."""

    model_config = STRICT

    architecture: str = Field(description="A name from GET /api/architectures.", max_length=64)
    config: dict[str, Any] | None = Field(None, description="Config fields; 'preset' picks a preset.")
    precision: PrecisionName = Field("bf16", description="Weights' and the KV cache's precision.")  # type: ignore[valid-type]
    quantization: Quantization | None = Field(None, description=StepSetup.model_fields["quantization"].description)
    gpu: GpuName = Field(DEFAULT_GPU, description="A GPU from GET /api/gpus.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share of the GPU's memory vLLM takes.")
    block_size: Literal[1, 8, 16, 32, 64, 128] = Field(16, description="Tokens per KV-cache block.")
    max_num_batched_tokens: int = Field(
        2048, ge=16, le=32768, description="Tokens of the largest prefill chunk (its activations are profiled)."
    )
    prompt_tokens: int = Field(1024, ge=1, le=1 << 20, description="Tokens of each request's prompt.")
    output_tokens: int = Field(1024, ge=1, le=1 << 20, description="Tokens each request generates.")
    kv_cache_dtype: KvCacheDtype = Field(  # type: ignore[valid-type]
        "auto", description="auto: the weights' dtype; fp8 or int8: one byte per element, read by a fused kernel."
    )
    non_torch_mb: int = Field(0, ge=0, le=1 << 20, description="MiB outside PyTorch's allocator to set aside.")
    utilization: float = Field(0.4, ge=0.01, le=1, description="Latency: share of the peak FLOP/s reached.")
    bandwidth_efficiency: float = Field(0.8, ge=0.01, le=1, description="Latency: share of the bandwidth reached.")


class MemoryOverviewRequest(StepSetup, SummaryRequest):
    """A selection: its inference peak and a training step's peak for every optimizer, in one request."""

    model_config = STRICT


class MemoryOverview(BaseModel):
    """One selection's memory: an inference forward, and one training step per optimizer."""

    kind: Literal["memory-overview"] = "memory-overview"
    inference: dict[str, Any] = Field(description="The inference MemoryReport.")
    training: dict[str, dict[str, Any]] = Field(
        description="Optimizer id -> its training MemoryReport, or {kind: 'refused', optimizer, detail} for an "
        "optimizer the request's layout cannot run (Adafactor on FSDP2's shards)."
    )


class CompareRequest(StepFields):
    """Two to eight selections, compared side by side under one step (precision and dtype: omitted, each
    selection's own dtype)."""

    model_config = STRICT

    selections: list[SummaryRequest] = Field(min_length=2, max_length=8)


class CompareEntry(BaseModel):
    """One selection's totals and memory."""

    label: str = Field(description="A short name for the selection, e.g. 'resnet (depth=50)'.")
    request: SummaryRequest
    totals: dict[str, Any] = Field(description="The summary's totals.")
    layers: int = Field(description="Number of modules.")
    precision: str = Field(description="The precision the peaks are for.")
    optimizer: str = Field(description="The training steps' optimizer.")
    mode: str = Field(description="The step step_peak_bytes is for.")
    inference_peak_bytes: int = Field(description="Peak of one inference forward.")
    training_peak_bytes: int = Field(description="Peak of one training step with the optimizer.")
    step_peak_bytes: int = Field(description="Peak of the step the comparison asked for (mode).")
    kv_cache_bytes: int | None = Field(None, description="mode generate: the KV cache's bytes.")
    training_breakdown: dict[str, int]
    inference_breakdown: dict[str, int]


class CompareReport(BaseModel):
    kind: Literal["compare"] = "compare"
    entries: list[CompareEntry]


class ErrorBody(BaseModel):
    """Every error: what is wrong and where."""

    detail: str = Field(description="What is wrong, in one sentence.")
    field: str | None = Field(None, description="The request field at fault, dotted (e.g. 'config.depth').")
    layer: str | None = Field(None, description="The model layer at fault, when a shape does not fit.")
    layer_type: str | None = None
    input_shape: list[int] | None = Field(None, description="What the layer received.")
    expected: str | None = Field(None, description="What the layer accepts.")
    op: str | None = Field(None, description="The operation that failed, when known.")
    known: list[str] | None = Field(None, description="Valid names, for an unknown architecture or preset.")
    errors: list[dict[str, Any]] | None = Field(None, description="Every validation error, when there are several.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "A body the server cannot read at all (a malformed multipart stream). Invalid JSON is a 422.",
    },
    404: {"model": ErrorBody, "description": "Unknown architecture or preset."},
    413: {
        "model": ErrorBody,
        "description": "The request body is too large, a real run would pass the memory budget, a computation "
        "passed its memory limit, or the response would pass the size limit (the detail says what to select).",
    },
    415: {"model": ErrorBody, "description": "Unsupported media type."},
    422: {"model": ErrorBody, "description": "A field out of range or of the wrong type, or shapes that do not fit."},
    503: {"model": ErrorBody, "description": "The device is busy with other real runs."},
    504: {"model": ErrorBody, "description": "The request's deadline passed: its work was stopped."},
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: ERROR_RESPONSES[code] for code in codes}


class ChannelRequest(BaseModel):
    """One channel of one layer, returned as raw values for a heatmap."""

    model_config = STRICT

    layer: str = Field(max_length=200, description="Module path, e.g. 'features.conv1'.")
    index: StrictInt = Field(ge=0, le=65_535, description="Channel number, from 0.")


WEIGHTS_DESCRIPTION = (
    "random (seed 0), trained (the architecture's bundled weights, see GET /api/weights), or torchvision:<file> "
    "from the local torch cache. To use your own, send multipart/form-data with a weights_file."
)


class FeatureMapsRequest(BaseModel):
    """JSON form of a feature-map request: one of the bundled sample images."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"architecture": "alexnet", "sample": "cat"}]},
    )

    architecture: str = Field(max_length=64, description="An image model (see live.feature_maps in its description).")
    config: dict[str, Any] | None = None
    sample: str = Field("cat", max_length=64, description="An id from GET /api/samples.")
    layers: list[str] | None = Field(
        None,
        max_length=MAX_LAYERS,
        description="Module paths to show (each once); default: the architecture's feature layers.",
    )
    weights: str = Field("random", max_length=200, description=WEIGHTS_DESCRIPTION)
    channel: ChannelRequest | None = Field(None, description="Also return this channel's raw values.")
    channel_offset: StrictInt = Field(
        0, ge=0, le=1_048_576, description="Each layer draws (and describes) 64 channels from this one: a page of them."
    )


class FeatureMapsForm(BaseModel):
    """multipart/form-data form of a feature-map request: an uploaded image, and optionally your weights."""

    model_config = ConfigDict(extra="forbid")

    architecture: str = Field(max_length=64, description="An image model.")
    image: bytes | None = Field(
        None, description="An image file (PNG, JPEG...); or give 'sample'.", json_schema_extra={"format": "binary"}
    )
    sample: str | None = Field(None, max_length=64, description="A bundled sample id, when no image is sent.")
    config: dict[str, Any] | None = Field(None, description="The config as JSON text.")
    layers: list[str] | None = Field(
        None, max_length=MAX_LAYERS, description="Module paths: a JSON list, or comma-separated."
    )
    weights: str = Field("random", max_length=200, description=WEIGHTS_DESCRIPTION)
    weights_file: bytes | None = Field(
        None,
        description="Your own weights: .safetensors, or a .pt/.pth state_dict (read with weights_only=True).",
        json_schema_extra={"format": "binary"},
    )
    weights_filename: str = Field("weights", max_length=200, description="Set from the uploaded file's name.")
    channel_layer: str | None = Field(None, max_length=200, description="Also return this layer's channel...")
    channel_index: int = Field(0, ge=0, le=65_535, description="...number channel_index.")
    channel_offset: int = Field(0, ge=0, le=1_048_576, description="Each layer draws 64 channels from this one.")

    @field_validator("config", mode="before")
    @classmethod
    def _config_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError('config must be JSON text, e.g. {"depth": 18}') from None
            except RecursionError:
                raise ValueError("config nests too deeply to read") from None
        return value

    @field_validator("layers", mode="before")
    @classmethod
    def _layers_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    raise ValueError("layers must be a JSON list or comma-separated module paths") from None
                except RecursionError:
                    raise ValueError("layers nests too deeply to read") from None
            return [part.strip() for part in text.split(",") if part.strip()]
        return value


class AttentionRequest(BaseModel):
    """A text to tokenize and feed to a model that reads text."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"architecture": "gpt", "config": {"preset": "nano"}, "text": "Attention is all you need."}]
        },
    )

    architecture: str = Field(
        max_length=64, description="A family whose description says live.attention_maps (GET /api/architectures)."
    )
    config: dict[str, Any] | None = None
    text: str = Field(
        min_length=1, max_length=2000, description="Tokenized by the bundled byte-pair encoder (64 tokens at most)."
    )
    weights: str = Field(
        "random",
        max_length=200,
        description="random (seed 0), or trained: the bundled weights, when GET /api/weights lists them.",
    )

    @field_validator("text", mode="before")
    @classmethod
    def _some_text(cls, text: Any) -> Any:
        if isinstance(text, str) and not text.strip():
            raise ValueError("type a sentence: attention needs at least one token to look at")
        return text

    layers: list[StrictInt] | None = Field(
        None,
        max_length=256,
        description="Attention layers to return, by index (the response's 'layers' lists them all); default: all.",
    )
    heads: list[StrictInt] | None = Field(
        None, max_length=1024, description="Heads to return in each chosen layer, by index; default: all."
    )
