"""The architecture zoo: one module per family, each registered by name.

>>> import models
>>> models.list_architectures()
['mlp', 'lenet5', 'alexnet', 'vgg', 'resnet', 'transformer', 'gpt', 'vit', 'sequential', 'huggingface']
>>> net = models.build_model("resnet", {"depth": 50})
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from .bundled import BUNDLED, TRAINED, BundledWeights, bundled_for, torchvision_checkpoint
from .registry import (
    IMAGENET_PREPROCESSING,
    PLAIN_PREPROCESSING,
    REGISTRY,
    Architecture,
    ArchitectureConfig,
    ConfigError,
    ImagePreprocessing,
    InputKind,
    Preset,
    UnknownArchitectureError,
    UnknownPresetError,
)

# Importing a family module registers it; the order here is the order users see.
FAMILY_MODULES = ("mlp", "lenet", "alexnet", "vgg", "resnet", "transformer", "gpt", "vit", "sequential", "huggingface")
for _module in FAMILY_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "BUNDLED",
    "IMAGENET_PREPROCESSING",
    "PLAIN_PREPROCESSING",
    "TRAINED",
    "Architecture",
    "ArchitectureConfig",
    "BundledWeights",
    "ConfigError",
    "ImagePreprocessing",
    "InputKind",
    "Preset",
    "UnknownArchitectureError",
    "UnknownPresetError",
    "build_model",
    "bundled_for",
    "get_architecture",
    "list_architectures",
    "torchvision_checkpoint",
]


def list_architectures() -> list[str]:
    """Registered architecture names, in display order."""
    return REGISTRY.names()


def get_architecture(name: str) -> Architecture:
    """The registered family called ``name``; raises ``UnknownArchitectureError`` listing the known ones."""
    return REGISTRY.get(name)


def build_model(name: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Build architecture ``name`` with ``config`` (validated; a ``preset`` key selects a preset).

    Wrap the call in ``with torch.device("meta"):`` to build without allocating weights.
    """
    return REGISTRY.get(name).build(config)
