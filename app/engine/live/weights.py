"""Weights for real runs: random, the bundled files, torchvision files already on disk, or an upload.

Nothing uploaded is ever unpickled beyond ``torch.load(weights_only=True)``;
safetensors files are read as plain tensors. A file is checked against the
model's keys and shapes before loading, and every mismatch is listed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from torch import nn

from models import BundledWeights, torchvision_checkpoint

from ..errors import InputError

MAX_LISTED_PROBLEMS = 50  # an error body lists this many mismatches at most, then counts the rest


class WeightsError(InputError):
    """A weights file that cannot be read, or does not fit the model; ``problems`` lists each mismatch."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        if self.problems:
            shown = "; ".join(self.problems[:12])
            more = f"; and {len(self.problems) - 12:,} more" if len(self.problems) > 12 else ""
            message = f"{message}: {shown}{more}"
        super().__init__(message, field="weights")

    def details(self) -> dict[str, Any]:
        listed = [{"field": "weights", "message": p} for p in self.problems[:MAX_LISTED_PROBLEMS]]
        hidden = len(self.problems) - len(listed)
        if hidden > 0:
            listed.append({"field": "weights", "message": f"and {hidden:,} more mismatches, not listed"})
        return {**super().details(), "errors": listed or None}


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's weights came from, in words the UI shows, and what they mean."""

    source: str  # random | trained | upload | torchvision:<name>
    label: str
    labels: tuple[str, ...] | None = None  # class names, when the weights come with them
    bundled: BundledWeights | None = None  # the bundled file, whose facts say how inputs are prepared


def load_digits_split() -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """scikit-learn's digits, split as the bundled LeNet-5 was trained (needs scikit-learn)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    return (x_train, y_train), (x_test, y_test)


def bundled_state_dict(bundled: BundledWeights) -> dict[str, torch.Tensor]:
    """A bundled file's tensors, floats in float32; a tied output layer gets its shared matrix back."""
    if not bundled.path.exists():
        raise InputError(f"the bundled {bundled.architecture} weights are missing ({bundled.filename})", "weights")
    state = {
        k: v.float() if v.is_floating_point() else v for k, v in load_safetensors(bundled.path.read_bytes()).items()
    }
    tied = bundled.metadata().get("tied")
    if tied:
        target, source = (part.strip() for part in tied.split("="))
        state[target] = state[source]
    return state


def _unwrap(obj: Any) -> Any:
    """Accept a bare state_dict or the usual checkpoint wrappers around one."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(k, str) for k in inner):
                return inner
    return obj


def read_state_dict(data: bytes, filename: str) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file, or a .pt/.pth/.bin state_dict read with weights_only=True."""
    name = filename.lower()
    if name.endswith(".safetensors"):
        try:
            state = load_safetensors(data)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise WeightsError(f"{filename} is not a readable safetensors file ({exc})") from None
    elif name.endswith((".pt", ".pth", ".bin", ".ckpt")):
        try:
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for a hostile or damaged pickle
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise WeightsError(
                f"{filename} cannot be read with torch.load(weights_only=True), which refuses anything but "
                f"tensors and plain containers: {first}"
            ) from None
        state = _unwrap(obj)
    else:
        raise WeightsError(f"{filename}: weights must be a .safetensors file or a .pt/.pth state_dict")
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"{filename} does not hold a state_dict (a mapping from names to tensors)")
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{filename} holds entries that are not tensors", [f"{k} is not a tensor" for k in bad])
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], filename: str = "the weights") -> None:
    """Raise ``WeightsError`` listing missing keys, unexpected keys and shape mismatches."""
    expected = model.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems += [f"missing {k} {list(expected[k].shape)}" for k in missing]
    problems += [f"unexpected {k} {list(state[k].shape)}" for k in unexpected]
    for key in expected.keys() & state.keys():
        if tuple(expected[key].shape) != tuple(state[key].shape):
            problems.append(f"{key}: the model has {list(expected[key].shape)}, the file {list(state[key].shape)}")
    if problems:
        raise WeightsError(f"{filename} does not fit this model ({len(problems)} mismatches)", problems)


def load_into(model: nn.Module, state: dict[str, torch.Tensor], filename: str) -> None:
    check_state_dict(model, state, filename)
    model.load_state_dict(state, strict=True)


def torchvision_cache() -> list[dict[str, Any]]:
    """torchvision weight files already in the local torch cache, with the zoo config each fits. Never downloads."""
    directory = Path(torch.hub.get_dir()) / "checkpoints"
    found: list[dict[str, Any]] = []
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        checkpoint = torchvision_checkpoint(path.name)
        if checkpoint is None:
            continue
        name, architecture, config = checkpoint
        found.append(
            {
                "id": f"torchvision:{path.name}",
                "name": name,
                "file": path.name,
                "architecture": architecture,
                "config": config,
                "bytes": path.stat().st_size,
            }
        )
    return found


def torchvision_state_dict(file_id: str) -> dict[str, torch.Tensor]:
    name = file_id.removeprefix("torchvision:")
    for entry in torchvision_cache():
        if entry["file"] == name:
            path = Path(torch.hub.get_dir()) / "checkpoints" / name
            return read_state_dict(path.read_bytes(), name)
    raise InputError(f"no torchvision file {name!r} in the local torch cache; nothing is ever downloaded", "weights")
