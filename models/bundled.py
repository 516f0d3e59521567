"""Weights the project trained and ships, and the torchvision checkpoints the zoo can load: their facts.

Like torchvision's ``Weights.meta``, each bundled file says what it is for: the
architecture and config it fits, its class labels, whether a drawn digit can feed
it (it was trained on inputs prepared as ``digits``), and whether the live pages
start from it. Reading the tensors is the engine's job (``app.engine.weights``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
TRAINED = "trained"  # the weights source id that names an architecture's bundled weights


@dataclass(frozen=True)
class BundledWeights:
    """A weights file trained by Layerscope for one config of one family."""

    name: str
    architecture: str
    filename: str
    config: dict[str, Any]
    labels: tuple[str, ...] | None = None  # class names, in output order
    input_preparation: str = "image"  # "digits": drawings are prepared as scikit-learn's 8 x 8 digits
    live_default: bool = False  # the live pages start from these weights for this architecture

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.filename

    @property
    def accepts_drawing(self) -> bool:
        return self.input_preparation == "digits"

    def metadata(self) -> dict[str, str]:
        """What the training script wrote into the file (description, normalisation, accuracy...)."""
        return dict(_metadata(self.path))

    def describe(self) -> str:
        return self.metadata().get("description", f"{self.architecture} weights trained by Layerscope")

    def facts(self) -> dict[str, Any]:
        meta = self.metadata()
        return {
            "name": self.name,
            "architecture": self.architecture,
            "config": self.config,
            "labels": list(self.labels) if self.labels else None,
            "input_preparation": self.input_preparation,
            "accepts_drawing": self.accepts_drawing,
            "live_default": self.live_default,
            "normalize": (
                {"mean": float(meta["normalize_mean"]), "std": float(meta["normalize_std"])}
                if "normalize_mean" in meta
                else None
            ),
        }


@lru_cache(maxsize=8)
def _metadata(path: Path) -> tuple[tuple[str, str], ...]:
    from safetensors import safe_open

    if not path.exists():
        raise FileNotFoundError(f"the bundled weights file {path.name} is missing")
    with safe_open(str(path), framework="pt") as handle:
        return tuple(sorted((handle.metadata() or {}).items()))


BUNDLED: tuple[BundledWeights, ...] = (
    BundledWeights(
        "lenet5-digits",
        "lenet5",
        "lenet5_digits.safetensors",
        {"variant": "modern"},
        labels=tuple(str(i) for i in range(10)),
        input_preparation="digits",
        live_default=True,
    ),
    BundledWeights("gpt-nano-corpus", "gpt", "gpt_nano_corpus.safetensors", {"preset": "nano"}, live_default=True),
)


def bundled_for(architecture: str) -> BundledWeights | None:
    """The weights bundled for ``architecture``, if any."""
    return next((b for b in BUNDLED if b.architecture == architecture), None)


def check_bundled_configs() -> None:
    """Each file's metadata names the config it was trained with: it must be the one declared here."""
    for bundled in BUNDLED:
        meta = bundled.metadata()
        if json.loads(meta["config"]) != bundled.config or meta["architecture"] != bundled.architecture:
            raise ValueError(f"{bundled.filename}: its metadata disagrees with its declared config")


# torchvision checkpoint files (as torch.hub caches them) and the zoo config with the same state_dict layout.
TORCHVISION_FILE = re.compile(
    r"^(?P<name>resnet(18|34|50|101|152)|alexnet|vgg(11|13|16|19)(_bn)?|wide_resnet(50|101)_2|"
    r"resnext50_32x4d|resnext101_32x8d)-(?:owt-)?[0-9a-f]{6,}\.pth$"
)


def torchvision_config(name: str) -> tuple[str, dict[str, Any]]:
    """torchvision model name -> (zoo architecture, config) with the same state_dict layout."""
    if name == "alexnet":
        return "alexnet", {"variant": "torchvision"}
    if name.startswith("vgg"):
        return "vgg", {"depth": int(name[3:5]), "batch_norm": name.endswith("_bn")}
    if name.startswith("wide_resnet"):
        return "resnet", {"depth": int(name[len("wide_resnet") :].split("_")[0]), "width_per_group": 128}
    if name.startswith("resnext"):
        depth, card = name[len("resnext") :].split("_")
        groups, width = card.split("x")
        return "resnet", {"depth": int(depth), "groups": int(groups), "width_per_group": int(width.rstrip("d"))}
    return "resnet", {"depth": int(name[len("resnet") :])}


def torchvision_checkpoint(filename: str) -> tuple[str, str, dict[str, Any]] | None:
    """(torchvision name, zoo architecture, config) for a cached checkpoint file name; None if not one."""
    match = TORCHVISION_FILE.match(filename)
    if not match:
        return None
    name = match.group("name")
    return (name, *torchvision_config(name))
