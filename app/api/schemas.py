"""Request and error bodies of the REST API (responses are the engine's typed reports)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..engine.selection import MAX_BATCH

DType = Literal["float32", "float16", "bfloat16", "float64"]


class InputSpec(BaseModel):
    """The batch fed to the model."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(1, ge=1, le=MAX_BATCH, description="Samples in the batch.")
    shape: list[int] | None = Field(
        None,
        min_length=1,
        max_length=5,
        description="One sample's shape without the batch dimension: [3, 224, 224] for images, [T] for token "
        "models, [S, T] for the encoder-decoder. Omitted: the architecture's default input.",
        json_schema_extra={"items": {"type": "integer", "minimum": 1, "maximum": 65536}},
    )


class SummaryRequest(BaseModel):
    """An architecture, its config, an input and a dtype."""

    model_config = ConfigDict(
        extra="forbid",
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
    dtype: DType = Field("float32", description="Parameter and input dtype.")


class MemoryRequest(SummaryRequest):
    """A selection plus how it runs: training or inference, optimizer, precision, and whether to measure."""

    mode: Literal["train", "inference"] = Field("train", description="A training step or one inference forward.")
    optimizer: Literal["adam", "adamw", "sgd", "sgd-momentum"] = Field("adam", description="Optimizer of the step.")
    precision: Literal["fp32", "fp16", "bf16", "amp-bf16", "amp-fp16"] = Field(
        "fp32", description="fp16/bf16: half-precision parameters; amp-*: fp32 parameters under autocast."
    )
    measure: bool = Field(
        False, description="Also run the step for real on the server's device (refused above the memory budget)."
    )


class CompareRequest(BaseModel):
    """Two to eight selections, compared side by side."""

    model_config = ConfigDict(extra="forbid")

    selections: list[SummaryRequest] = Field(min_length=2, max_length=8)


class CompareEntry(BaseModel):
    """One selection's totals and memory."""

    label: str = Field(description="A short name for the selection, e.g. 'resnet (depth=50)'.")
    request: SummaryRequest
    totals: dict[str, Any] = Field(description="The summary's totals.")
    layers: int = Field(description="Number of modules.")
    inference_peak_bytes: int = Field(description="Peak of one inference forward.")
    training_peak_bytes: int = Field(description="Peak of one Adam training step at fp32.")
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
    known: list[str] | None = Field(None, description="Valid names, for an unknown architecture or preset.")
    errors: list[dict[str, Any]] | None = Field(None, description="Every validation error, when there are several.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown architecture or preset."},
    413: {"model": ErrorBody, "description": "Request too large, or a real run over the memory budget."},
    415: {"model": ErrorBody, "description": "Unsupported media type."},
    422: {"model": ErrorBody, "description": "A field out of range or of the wrong type, or shapes that do not fit."},
    503: {"model": ErrorBody, "description": "The device is busy with other real runs."},
    504: {"model": ErrorBody, "description": "The computation took longer than the request timeout."},
}


class ChannelRequest(BaseModel):
    """One channel of one layer, returned as raw values for a heatmap."""

    model_config = ConfigDict(extra="forbid")

    layer: str = Field(max_length=200, description="Module path, e.g. 'features.conv1'.")
    index: int = Field(ge=0, le=65_535, description="Channel number, from 0.")


WeightsSource = Field(
    "random",
    max_length=200,
    description="random (seed 0), trained (the bundled LeNet-5), or torchvision:<file> from the local torch cache. "
    "To upload your own, send multipart/form-data with a weights_file.",
)


class FeatureMapsRequest(BaseModel):
    """JSON form of a feature-map request: one of the bundled sample images."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"architecture": "alexnet", "sample": "cat"}]},
    )

    architecture: str = Field(
        max_length=64, description="An image model: lenet5, alexnet, vgg, resnet, vit, sequential."
    )
    config: dict[str, Any] | None = None
    sample: str = Field("cat", max_length=64, description="An id from GET /api/samples.")
    layers: list[str] | None = Field(
        None, max_length=64, description="Module paths to show; default: every conv/pool layer, or a ResNet's stages."
    )
    weights: str = WeightsSource
    channel: ChannelRequest | None = Field(None, description="Also return this channel's raw values.")


class FeatureMapsForm(BaseModel):
    """multipart/form-data form of a feature-map request (documentation of the fields)."""

    image: bytes | None = Field(None, description="An image file (PNG, JPEG...); or give 'sample'.")
    sample: str | None = Field(None, description="A bundled sample id, when no image is sent.")
    architecture: str
    config: str | None = Field(None, description="The config as JSON text.")
    layers: str | None = Field(None, description="JSON list or comma-separated module paths.")
    weights: str | None = Field(None, description="random, trained, or torchvision:<file>.")
    weights_file: bytes | None = Field(None, description="Your own weights: .safetensors, or a .pt/.pth state_dict.")
    channel_layer: str | None = None
    channel_index: int | None = None


class AttentionRequest(BaseModel):
    """A text to tokenize and feed to a Transformer or GPT."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"architecture": "gpt", "config": {"preset": "nano"}, "text": "Attention is all you need."}]
        },
    )

    architecture: Literal["gpt", "transformer"]
    config: dict[str, Any] | None = None
    text: str = Field(
        min_length=1, max_length=2000, description="Tokenized by the bundled byte-pair encoder (64 tokens at most)."
    )
    weights: str = Field(
        "random", max_length=200, description="random (seed 0): the only weights bundled for these models."
    )
