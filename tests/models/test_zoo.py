"""Every registered architecture and preset builds on meta and reproduces its declared parameter count."""

from __future__ import annotations

import pytest
import torch

import models
from models.registry import REGISTRY, Architecture, ArchitectureConfig, InputKind, Registry

CASES = [(arch.name, None) for arch in REGISTRY] + [(arch.name, p.name) for arch in REGISTRY for p in arch.presets]


def _build(name: str, preset: str | None) -> torch.nn.Module:
    with torch.device("meta"):
        return models.build_model(name, {"preset": preset} if preset else None)


@pytest.mark.parametrize(("name", "preset"), CASES, ids=[f"{n}-{p or 'default'}" for n, p in CASES])
def test_declared_parameter_counts(name: str, preset: str | None) -> None:
    arch = models.get_architecture(name)
    declared = arch.preset(preset).params if preset else arch.default_params
    model = _build(name, preset)
    assert all(p.device.type == "meta" for p in model.parameters())
    if declared is not None:
        assert sum(p.numel() for p in model.parameters()) == declared


@pytest.mark.parametrize(
    ("name", "config", "expected"),
    [
        ("mlp", None, 22_401),
        ("lenet5", {"variant": "classic"}, 61_706),
        ("lenet5", {"variant": "modern"}, 61_706),
        ("alexnet", None, 62_378_344),
        ("alexnet", {"variant": "torchvision"}, 61_100_840),
        ("vgg", None, 138_357_544),
        ("resnet", None, 11_689_512),
        ("resnet", {"depth": 50}, 25_557_032),
        ("gpt", None, 124_439_808),
        ("vit", None, 86_567_656),
    ],
)
def test_reference_parameter_counts(name: str, config: dict | None, expected: int) -> None:
    with torch.device("meta"):
        model = models.build_model(name, config)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_mlp_weights_and_biases_split_as_in_the_quiz() -> None:
    with torch.device("meta"):
        model = models.build_model("mlp")
    weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith("bias"))
    assert (weights, biases) == (22_100, 301)


def test_default_config_is_the_best_known_member() -> None:
    assert models.get_architecture("alexnet").config_cls().variant == "original"
    assert models.get_architecture("vgg").config_cls().depth == 16
    assert models.get_architecture("resnet").config_cls().depth == 18
    gpt = models.get_architecture("gpt").config_cls()
    assert (gpt.d_model, gpt.layers, gpt.heads, gpt.context) == (768, 12, 12, 1024)


def test_every_config_field_has_default_description_and_schema() -> None:
    for arch in REGISTRY:
        schema = arch.config_cls.model_json_schema()
        for field_name, field in arch.config_cls.model_fields.items():
            assert field.description, f"{arch.name}.{field_name} lacks a description"
            assert not field.is_required(), f"{arch.name}.{field_name} lacks a default"
            assert field_name in schema["properties"]


def test_numeric_fields_are_bounded() -> None:
    for arch in REGISTRY:
        props = arch.config_cls.model_json_schema()["properties"]
        for field_name, prop in props.items():
            options = prop.get("anyOf", [prop])
            for option in options:
                if option.get("type") in ("integer", "number") and "enum" not in option:
                    assert "maximum" in option or "exclusiveMaximum" in option, f"{arch.name}.{field_name}"


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(models.UnknownArchitectureError) as info:
        models.build_model("alexnett")
    assert "alexnet" in str(info.value) and "resnet" in str(info.value)
    assert info.value.known == models.list_architectures()


def test_duplicate_registration_raises() -> None:
    registry = Registry()
    arch = models.get_architecture("mlp")
    registry.register(arch)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(arch)


def test_duplicate_preset_names_raise() -> None:
    class Config(ArchitectureConfig):
        pass

    arch = Architecture(
        name="x",
        title="x",
        description="x",
        config_cls=Config,
        builder=lambda c: torch.nn.Identity(),
        input_kind=InputKind.VECTOR,
        default_input=lambda c: (1,),
        presets=(models.Preset("a", "a", {}), models.Preset("a", "b", {})),
    )
    with pytest.raises(ValueError, match="duplicate preset"):
        Registry().register(arch)


def test_unknown_config_key_is_rejected_with_its_name() -> None:
    with pytest.raises(models.ConfigError) as info:
        models.build_model("resnet", {"detph": 50})
    assert info.value.field == "config.detph"


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(models.UnknownPresetError, match="resnet50"):
        models.build_model("resnet", {"preset": "resnet51"})


def test_list_architectures_order() -> None:
    assert models.list_architectures() == [
        "mlp",
        "lenet5",
        "alexnet",
        "vgg",
        "resnet",
        "transformer",
        "gpt",
        "vit",
        "sequential",
        "huggingface",
    ]


def test_describe_is_json_ready_and_round_trips() -> None:
    import json

    for arch in REGISTRY:
        described = json.loads(json.dumps(arch.describe()))
        assert described["name"] == arch.name
        assert described["defaults"] == arch.parse_config(described["defaults"]).model_dump(mode="json")
        for preset in described["presets"]:  # each preset's described config rebuilds the same preset
            assert arch.parse_config(preset["config"]) == arch.parse_config({"preset": preset["name"]})


@pytest.mark.parametrize(
    ("name", "preset", "published"),
    [
        # GPT-2 as OpenAI released it (tied embeddings), the counts Hugging Face's checkpoints report.
        ("gpt", "gpt2", 124_439_808),
        ("gpt", "gpt2-medium", 354_823_168),
        ("gpt", "gpt2-large", 774_030_080),
        # ViT-L/16 as torchvision publishes it (its model table).
        ("vit", "vit_l_16", 304_326_632),
        ("vit", "vit_b_16", 86_567_656),
    ],
)
def test_presets_match_published_counts(name: str, preset: str, published: int) -> None:
    """The presets' declared counts come from closed forms in the same files: pin them to published figures."""
    assert models.get_architecture(name).preset(preset).params == published
    assert sum(p.numel() for p in _build(name, preset).parameters()) == published


@pytest.mark.parametrize("preset", ["base", "big"])
def test_transformer_presets_match_torch_nn_transformer(preset: str) -> None:
    """Reference: torch.nn.Transformer with the same sizes, plus the shared embedding, less its two final norms.

    The paper's base and big configurations (65M and 213M in its table, rounded, with a 37,000-token vocabulary
    shared by source, target and the pre-softmax projection) built by PyTorch's own modules.
    """
    arch = models.get_architecture("transformer")
    config = arch.parse_config({"preset": preset})
    with torch.device("meta"):
        reference = torch.nn.Transformer(
            config.d_model, config.heads, config.encoder_layers, config.decoder_layers, config.d_ff, batch_first=True
        )
    final_norms = (
        2 * 2 * config.d_model
    )  # nn.Transformer ends encoder and decoder with a LayerNorm; post-norm needs none
    expected = sum(p.numel() for p in reference.parameters()) - final_norms + config.vocab_size * config.d_model
    assert arch.preset(preset).params == expected
    assert abs(expected - {"base": 65e6, "big": 213e6}[preset]) / expected < 0.05  # near the paper's rounded figures
