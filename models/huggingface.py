"""Any architecture that `transformers` implements, from its config.json: Llama, Mistral, Qwen, Mixtral, Gemma...

    {"preset": "llama-3.1-8b"}
    {"hf_config": {...the model's config.json...}, "head": "causal-lm"}

The model is built with transformers' auto classes from the config, on the device
the caller chose (``torch.device("meta")``: nothing allocated). There are no
weights and no network, and never remote code: a config that asks for code
(``auto_map``) or names a ``model_type`` this transformers does not implement is
refused, naming it. ``head`` picks the task class; by default the one the config's
``architectures`` names (``LlamaForCausalLM`` -> ``causal-lm``), else the bare model.

Presets are the published config.json files of well-known models
(``models/hf_configs/``, credited in its CREDITS.md), each pinned to its published
parameter count.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from .kv_cache import GreedyDecoding
from .registry import Architecture, ArchitectureConfig, InputKind, Preset, register

CONFIG_DIR = Path(__file__).parent / "hf_configs"
MAX_CONFIG_BYTES = 64 * 1024  # a config.json is a few KB; label maps of 1,000 classes stay well under this
DEFAULT_TOKENS = 2048  # default sequence length, or the model's context when shorter
NO_CONTEXT = 1 << 20  # models without absolute positions (T5's relative buckets) have no fixed context

Head = Literal[
    "base",
    "causal-lm",
    "masked-lm",
    "seq2seq-lm",
    "image-classification",
    "sequence-classification",
    "token-classification",
    "question-answering",
]
AUTO_CLASSES: dict[str, tuple[str, str]] = {  # head -> transformers auto class, and its model_type -> class table
    "base": ("AutoModel", "MODEL_MAPPING_NAMES"),
    "causal-lm": ("AutoModelForCausalLM", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"),
    "masked-lm": ("AutoModelForMaskedLM", "MODEL_FOR_MASKED_LM_MAPPING_NAMES"),
    "seq2seq-lm": ("AutoModelForSeq2SeqLM", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES"),
    "image-classification": ("AutoModelForImageClassification", "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES"),
    "sequence-classification": (
        "AutoModelForSequenceClassification",
        "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    ),
    "token-classification": ("AutoModelForTokenClassification", "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES"),
    "question-answering": ("AutoModelForQuestionAnswering", "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES"),
}
# How a class named in the config's "architectures" ends -> its head (first match wins).
CLASS_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("ForCausalLM", "causal-lm"),
    ("LMHeadModel", "causal-lm"),
    ("ForMaskedLM", "masked-lm"),
    ("ForConditionalGeneration", "seq2seq-lm"),
    ("ForImageClassification", "image-classification"),
    ("ForSequenceClassification", "sequence-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
)
# (file stem, title, head or None for the config's own, published parameter count)
PRESET_TABLE: tuple[tuple[str, str, str | None, int], ...] = (
    ("llama-3.1-8b", "Llama 3.1 8B: grouped-query attention, rotary (llama3 scaling), SwiGLU", None, 8_030_261_248),
    ("mistral-7b", "Mistral 7B v0.1: grouped-query attention, sliding window of 4,096", None, 7_241_732_096),
    ("qwen2.5-7b", "Qwen2.5 7B: grouped-query attention (4 KV heads), biases on Q, K, V", None, 7_615_616_512),
    ("mixtral-8x7b", "Mixtral 8x7B: a mixture of 8 experts, top-2 per token", None, 46_702_792_704),
    ("gemma-2-9b", "Gemma 2 9B: alternating sliding and global attention, logit soft-capping", None, 9_241_705_984),
    ("phi-3-mini", "Phi-3 mini (4k): fused QKV and gate-up projections", None, 3_821_079_552),
    ("gpt2", "GPT-2 small (124M), with its language-model head", None, 124_439_808),
    ("bert-base", "BERT base (uncased), the encoder with its pooler", "base", 109_482_240),
    ("t5-base", "T5 base: encoder-decoder, relative position buckets", None, 222_903_552),
    ("vit-base", "ViT-B/16: an ImageNet classifier on 224 x 224 images", None, 86_567_656),
)


@cache
def bundled_config(name: str) -> dict[str, Any]:
    """A preset's config.json, as published."""
    return json.loads((CONFIG_DIR / f"{name}.json").read_text())


def _transformers():
    import transformers

    transformers.logging.set_verbosity_error()  # its notes on unused token ids are not the user's concern
    return transformers


@cache
def known_model_types() -> tuple[str, ...]:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return tuple(CONFIG_MAPPING_NAMES)


def check_hf_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config.json transformers can build without running any code from it; raises ValueError saying why not."""
    if len(json.dumps(config)) > MAX_CONFIG_BYTES:
        raise ValueError(f"the config is over {MAX_CONFIG_BYTES // 1024} KB; a config.json is a few KB")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ValueError('the config has no model_type (config.json names one, e.g. "llama")')
    if "auto_map" in config:
        raise ValueError(
            f"this {model_type} config asks for remote code (auto_map): Layerscope never runs code that comes with "
            "a config; use a model_type transformers implements"
        )
    known = known_model_types()
    if model_type not in known:
        close = difflib.get_close_matches(model_type, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"model_type {model_type!r} is not one transformers {_version()} implements{hint}")
    pretrained_config(config)  # transformers' own checks of the values (types, heads dividing the width...)
    return config


def _version() -> str:
    from importlib.metadata import version

    return version("transformers")


def pretrained_config(config: dict[str, Any]) -> Any:
    """The transformers config object for a checked config.json."""
    transformers = _transformers()
    values = dict(config)
    model_type = values.pop("model_type")
    try:
        return transformers.CONFIG_MAPPING[model_type].from_dict(values)
    except Exception as exc:  # transformers raises its own validation errors for values of the wrong kind
        reason = " ".join(str(exc).split())
        if ": " in reason and reason.lower().startswith(("validation error", "class validation error")):
            reason = reason.split(": ", 1)[1]
        raise ValueError(f"transformers cannot read this {model_type} config: {reason[:300]}") from None


class FieldError(ValueError):
    """A config value that cannot be used; ``path`` names its field (the registry reports it as config.<path>)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


def heads_for(model_type: str) -> list[str]:
    """The heads transformers implements for a model type."""
    from transformers.models.auto import modeling_auto

    return [head for head, (_, table) in AUTO_CLASSES.items() if model_type in getattr(modeling_auto, table)]


def config_head(config: dict[str, Any]) -> str:
    """The head the config's "architectures" names (the bare model when it names none we know)."""
    for name in config.get("architectures") or ():
        for suffix, head in CLASS_SUFFIXES:
            if isinstance(name, str) and name.endswith(suffix):
                return head
    return "base"


class HuggingFaceConfig(ArchitectureConfig):
    """A Hugging Face config.json and the task head to build on it."""

    hf_config: dict[str, Any] = Field(
        default_factory=lambda: dict(bundled_config("gpt2")),
        description="The model's config.json, as published (model_type names the architecture). Never remote code.",
        json_schema_extra={"x-editor": "config-file", "x-label": "config.json"},
    )
    head: Head | None = Field(
        None,
        description="The task class: base, causal-lm, masked-lm, seq2seq-lm, image-classification, ... "
        "Omitted: from the config's architectures.",
    )

    @field_validator("hf_config")
    @classmethod
    def _buildable(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_hf_config(value)

    @model_validator(mode="after")
    def _head_exists(self) -> HuggingFaceConfig:
        model_type = self.hf_config["model_type"]
        offered = heads_for(model_type)
        if self.task not in offered:
            raise FieldError(
                "head",
                f"transformers has no {self.task} class for model_type {model_type!r}; it has: {', '.join(offered)}",
            )
        return self

    @property
    def task(self) -> str:
        return self.head or config_head(self.hf_config)


def kind(config: HuggingFaceConfig) -> InputKind:
    values = config.hf_config
    if config.task == "seq2seq-lm" or (values.get("is_encoder_decoder") and config.task == "base"):
        return InputKind.SEQ2SEQ
    if config.task == "image-classification" or ("image_size" in values and "vocab_size" not in values):
        return InputKind.IMAGE
    return InputKind.TOKENS


def context(config: HuggingFaceConfig) -> int:
    """The longest sequence the config's positions cover (models with relative positions: no fixed limit)."""
    values = config.hf_config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(values.get(key), int) and not values.get("relative_attention_num_buckets"):
            return values[key]
    return NO_CONTEXT


def default_input(config: HuggingFaceConfig) -> tuple[int, ...]:
    """Token ids up to the context (at most 2,048), an encoder-decoder's source and target, or one image."""
    values = config.hf_config
    match kind(config):
        case InputKind.IMAGE:
            side = values.get("image_size", 224)
            side = side if isinstance(side, int) else side[0]
            return (values.get("num_channels", 3), side, side)
        case InputKind.SEQ2SEQ:
            length = min(values.get("n_positions") or 512, 512)
            return (length, length)
        case _:
            return (min(context(config), DEFAULT_TOKENS),)


def build(config: HuggingFaceConfig) -> nn.Module:
    transformers = _transformers()
    hf = pretrained_config(config.hf_config)
    auto = getattr(transformers, AUTO_CLASSES[config.task][0])
    try:
        return auto.from_config(hf, trust_remote_code=False)
    except (ValueError, KeyError, TypeError) as exc:
        model_type = config.hf_config["model_type"]
        raise ValueError(f"transformers has no {config.task} model for model_type {model_type!r}: {exc}") from None


def inputs(
    config: HuggingFaceConfig,
    module: nn.Module,
    size: tuple[int, ...],
    batch: int,
    dtype: torch.dtype,
    device: torch.device | str,
    real: bool,
) -> dict[str, torch.Tensor]:
    """The forward's keyword arguments: input_ids, pixel_values, or an encoder-decoder's two sequences."""
    vocab = config.hf_config.get("vocab_size") or 2

    def ids(length: int) -> torch.Tensor:
        if real:
            return torch.randint(0, vocab, (batch, length), device=device)
        return torch.empty((batch, length), dtype=torch.long, device=device)

    match kind(config):
        case InputKind.IMAGE:
            shape = (batch, *size)
            pixels = torch.randn(shape, device=device) if real else torch.empty(shape, device=device)
            return {"pixel_values": pixels.to(dtype)}
        case InputKind.SEQ2SEQ:
            return {"input_ids": ids(size[0]), "decoder_input_ids": ids(size[-1])}
        case _:
            return {"input_ids": ids(size[0])}


EIGHT_BIT_KV = {"fp8": torch.float8_e4m3fn, "int8": torch.int8}


def _quantize(states: torch.Tensor, scale: torch.Tensor, storage: torch.dtype) -> torch.Tensor:
    if storage == torch.int8:
        return torch.clamp(torch.round(states / scale), -128, 127).to(torch.int8)
    return (states / scale).to(storage)


@cache
def _eight_bit_layer(base: type, storage: torch.dtype) -> type:
    """``base`` (transformers' DynamicLayer or DynamicSlidingWindowLayer) storing keys and values as ``storage``.

    One byte per element and one static scale per layer for keys and one for values (float32 scalars, 1.0 until
    calibrated: vLLM's fp8 cache without checkpoint scales), applied as each new token's states are stored.
    Attention runs in the compute dtype: ``update`` hands it the layer's whole cache dequantized, one layer at a
    time, as an eager attention needs (a fused kernel reading 8-bit directly saves that copy: serving sizes it).
    """

    def update(self: Any, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "key_scale", None) is None:
            self.compute_dtype = key_states.dtype
            self.key_scale = torch.ones((), dtype=torch.float32, device=key_states.device)
            self.value_scale = torch.ones((), dtype=torch.float32, device=key_states.device)
        keys, values = base.update(
            self,
            _quantize(key_states, self.key_scale, storage),
            _quantize(value_states, self.value_scale, storage),
            *args,
            **kwargs,
        )
        return keys.to(self.compute_dtype).mul_(self.key_scale), values.to(self.compute_dtype).mul_(self.value_scale)

    # One base (no mixin): the cache's layers are re-classed in place, which needs the same object layout.
    return type(f"EightBit{base.__name__}", (base,), {"update": update, "storage": storage, "__doc__": update.__doc__})


def eight_bit_cache(cache: Any, kv_cache_dtype: str) -> Any:
    """``cache`` (a fresh DynamicCache) with each self-attention layer storing one byte per element."""
    storage = EIGHT_BIT_KV[kv_cache_dtype]
    for layer in cache.layers:
        layer.__class__ = _eight_bit_layer(type(layer), storage)
    return cache


class GreedyHuggingFace(GreedyDecoding):
    """Greedy generation of new tokens after the prompt, with the model's default (dynamic) cache.

    On real tensors ``run`` is ``model.generate(ids, max_new_tokens=N, min_new_tokens=N, do_sample=False)``
    itself. Without data (fake tensors) ``generate``'s own loop cannot run: it reads token values to decide
    when to stop. The same steps are then taken one by one, as ``generate`` takes them: a prefill forward
    keeping only the last position's logits, then one forward per new token on a ``DynamicCache``; each
    step copies the last logits to float32, masks end-of-sequence (min_new_tokens), takes the argmax and
    appends it.
    """

    # Cache layers whose state after n decode steps ``skip`` can reproduce: they grow by concatenation.
    SKIPPABLE = (
        "DynamicLayer",
        "DynamicSlidingWindowLayer",
        "EightBitDynamicLayer",
        "EightBitDynamicSlidingWindowLayer",
    )
    STORED_DTYPES = tuple(EIGHT_BIT_KV)

    def _new_cache(self) -> Any:
        transformers = _transformers()
        cache = transformers.DynamicCache(config=self.model.config)
        return eight_bit_cache(cache, self.kv_cache_dtype) if self.kv_cache_dtype != "auto" else cache

    def run(self, new_tokens: int, on_step: Callable[[str], None]) -> Any:
        if not self.real:
            return super().run(new_tokens, on_step)
        model, prompt = self.model, self.inputs.kwargs["input_ids"]
        eos = model.generation_config.eos_token_id
        calls = {"forward": 0}

        def phase(module: nn.Module, args: Any) -> None:  # generate's first forward is the prefill
            on_step("prefill" if calls["forward"] == 0 else "decode")
            calls["forward"] += 1

        pad = model.generation_config.pad_token_id
        hook = model.register_forward_pre_hook(phase)
        own_cache = {}
        if self.kv_cache_dtype != "auto":
            decoder = self._new_cache()
            transformers = _transformers()
            encoder_decoder = getattr(model.config, "is_encoder_decoder", False)
            cache = transformers.EncoderDecoderCache(decoder, transformers.DynamicCache(config=model.config))
            own_cache = {"past_key_values": cache if encoder_decoder else decoder}
        try:
            output = model.generate(
                prompt,
                **own_cache,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                return_dict_in_generate=True,
                pad_token_id=pad if pad is not None else (eos[0] if isinstance(eos, list) else eos),
            )
        finally:
            hook.remove()
        self.cache = getattr(output, "cache", None) or output.past_key_values
        return self.cache

    def prefill(self) -> None:
        transformers = _transformers()
        model = self.model
        config = model.config
        prompt = self.inputs.kwargs["input_ids"]
        eos = model.generation_config.eos_token_id
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        self.step_kwargs: dict[str, Any] = {"use_cache": True, "return_dict": True}
        accepted = inspect.signature(model.forward).parameters
        self.cache_name = "cache" if "cache" in accepted else "past_key_values"  # renamed in transformers 5.x
        if "logits_to_keep" in accepted:
            self.step_kwargs["logits_to_keep"] = 1  # generate asks for the last position's logits only
        cache_cls = transformers.DynamicCache
        if getattr(config, "is_encoder_decoder", False):  # the cross-attention cache stays in the compute dtype
            self.cache = transformers.EncoderDecoderCache(self._new_cache(), cache_cls(config=config))
            self.step_kwargs["encoder_outputs"] = model.get_encoder()(input_ids=prompt, return_dict=True)
            start = config.decoder_start_token_id or 0
            self.tokens = self.next_token = torch.full(
                (prompt.shape[0], 1), start, dtype=torch.long, device=prompt.device
            )
            self.input_name = "decoder_input_ids"
        else:
            self.cache = self._new_cache()
            self.tokens = self.next_token = prompt
            self.input_name = "input_ids"
        self._step()

    def decode(self) -> None:
        self._step()

    def _step(self) -> None:
        kwargs = {self.input_name: self.next_token, self.cache_name: self.cache}
        output = self.model(**kwargs, **self.step_kwargs)
        scores = output.logits[:, -1].to(copy=True, dtype=torch.float32)  # (B, vocab)
        if self.eos_ids:  # min_new_tokens: end-of-sequence may not win yet
            vocab = torch.arange(scores.shape[-1], device=scores.device)
            scores = torch.where(  # one expression, as generate writes it: its temporaries go at once
                torch.isin(vocab, torch.tensor(self.eos_ids, device=scores.device)), -math.inf, scores
            )
        self.next_token = scores.argmax(dim=-1)[:, None]  # (B, 1)
        self.tokens = torch.cat([self.tokens, self.next_token], dim=-1)
        del output, scores  # as generate does: the step's outputs live until its token is appended
        self.steps += 1

    def _layers(self) -> list[Any]:
        own = getattr(self.cache, "self_attention_cache", self.cache)
        return list(getattr(own, "layers", []))

    def skippable(self) -> bool:
        """Whether every cache layer grows by concatenation (a sliding window's included)."""
        layers = self._layers()
        return bool(layers) and all(type(layer).__name__ in self.SKIPPABLE for layer in layers)

    def skip(self, steps: int) -> None:
        """Each layer updated as ``steps`` decode steps would leave it: with ``steps - 1`` positions, then one
        (a sliding window then keeps its window as a view of the last step's keys, as after real steps)."""
        if not self.skippable():
            raise NotImplementedError(f"cannot skip decode steps of a {type(self.cache).__name__}")
        for layer in self._layers():
            b, h, _, d = layer.keys.shape
            dtype = getattr(layer, "compute_dtype", layer.keys.dtype)  # an 8-bit layer takes compute-dtype states
            for chunk in (steps - 1, 1):
                if chunk:
                    layer.update(
                        layer.keys.new_empty(b, h, chunk, d, dtype=dtype),
                        layer.values.new_empty(b, h, chunk, d, dtype=dtype),
                    )
        self.tokens = torch.cat([self.tokens, self.tokens.new_empty(self.tokens.shape[0], steps)], dim=-1)
        self.steps += steps

    def cached_tokens(self) -> int:
        own = getattr(self.cache, "self_attention_cache", self.cache)
        return int(own.get_seq_length())

    def windows(self) -> tuple[int, ...]:
        return tuple(sorted({layer.sliding_window for layer in self._layers() if getattr(layer, "is_sliding", False)}))


ARCHITECTURE = register(
    Architecture(
        name="huggingface",
        title="Hugging Face",
        description="Any architecture transformers implements, from its config.json (Llama, Mistral, Qwen, Mixtral, "
        "Gemma, Phi, BERT, T5, ViT...), built on meta: no weights, no network, never remote code.",
        config_cls=HuggingFaceConfig,
        builder=build,
        input_kind=kind,
        default_input=default_input,
        presets=tuple(
            Preset(name, title, {"hf_config": bundled_config(name), **({"head": head} if head else {})}, params)
            for name, title, head, params in PRESET_TABLE
        ),
        default_params=124_439_808,  # the default config: GPT-2 small
        preprocessing=None,  # image heads are sized, not fed photographs: preprocessing belongs to a checkpoint
        context=context,
        stored_quantization=lambda config: config.hf_config.get("quantization_config") or None,
        inputs=inputs,
        generate=GreedyHuggingFace,
    )
)
