"""Which device real runs use, and what the machine offers: facts the service and the CLI ask for."""

from __future__ import annotations

import platform
from typing import Any

import torch

from .errors import InputError


def default_device() -> torch.device:
    """cuda:0 when PyTorch sees a GPU, else the CPU."""
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' or None -> the default; 'cuda' -> cuda:0; refuses devices this machine lacks."""
    if device is None or device == "auto":
        return default_device()
    target = torch.device(device)
    if target.type not in ("cpu", "cuda"):
        raise InputError(f"device must be cpu or cuda, got {target}", field="device")
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError("device 'cuda' was asked for but this server has no GPU", field="device")
        if target.index is None:
            target = torch.device("cuda", 0)
    return target


def device_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """torch's version, the device real runs use, and the GPU's name when there is one."""
    target = resolve_device(device)
    return {
        "torch": torch.__version__,
        "device": str(target),
        "gpu": torch.cuda.get_device_name(target) if target.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
