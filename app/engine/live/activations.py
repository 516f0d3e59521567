"""Live feature maps: run a real model on one image and return what chosen layers output.

Each layer's channels come back as per-channel statistics and as one PNG grid
(each channel scaled to its own min..max), plus one channel's raw values on
demand. This is a real forward pass, on the service's device, so callers put
it behind the memory budget and the device gate.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, Field
from torch import nn

from ..errors import InputError

MAX_CHANNELS = 64  # channels drawn in one layer's grid
GRID_SIDE = 768  # the grid's longest side, in pixels
CHANNEL_SIDE = 256  # a single channel's values are pooled down to at most this side


class ChannelStats(BaseModel):
    channel: int
    min: float
    max: float
    mean: float
    zero_fraction: float = Field(description="Share of exact zeros (after a ReLU, the inactive units).")


class LayerMaps(BaseModel):
    path: str
    type: str
    shape: list[int] = Field(description="Output shape for the one image: channels, height, width.")
    channel_offset: int = Field(0, description="First channel drawn (pages of 64: ask for the next with it).")
    channels_shown: int = Field(description="Channels drawn in the grid (and given statistics), from channel_offset.")
    columns: int
    rows: int
    tile: list[int] = Field(description="Height and width of one channel's tile in the grid image.")
    grid_png: str = Field(description="data: URL of the PNG grid, channel_offset top left, row by row.")
    stats: list[ChannelStats] = Field(description="Statistics of the channels drawn.")


class ChannelValues(BaseModel):
    layer: str
    index: int
    shape: list[int] = Field(description="Height and width of the values (pooled when over 256).")
    values: list[list[float]]
    min: float
    max: float


class Prediction(BaseModel):
    probabilities: list[float] = Field(description="softmax of the model's output.")
    top: list[dict[str, Any]] = Field(description="The most probable classes: index, label, probability.")


def png_data_url(image: Image.Image, compress_level: int = 3) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _normalise_channels(maps: torch.Tensor) -> np.ndarray:
    """(C, H, W) -> uint8, each channel stretched over its own min..max (over the whole layer when 1 x 1)."""
    flat = maps.flatten(1)
    if flat.shape[1] == 1:  # one value per channel: compare channels with each other
        flat = flat.reshape(1, -1).expand(flat.shape[0], -1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    high = flat.max(dim=1).values.view(-1, 1, 1)
    span = (high - low).clamp_min(1e-12)
    scaled = ((maps - low) / span * 255.0).where(high > low, torch.zeros_like(maps))
    return scaled.round().clamp(0, 255).to(torch.uint8).numpy()


def _grid(maps: torch.Tensor) -> tuple[Image.Image, int, int, tuple[int, int]]:
    channels, height, width = maps.shape
    columns, rows, tile_h, tile_w = grid_layout(channels, height, width)
    if (tile_h, tile_w) != (height, width):
        maps = torch.nn.functional.interpolate(maps[None], size=(tile_h, tile_w), mode="area")[0]
    pixels = _normalise_channels(maps)
    canvas = np.full((rows * (tile_h + 1) - 1, columns * (tile_w + 1) - 1), 255, dtype=np.uint8)
    for index in range(channels):
        r, c = divmod(index, columns)
        canvas[r * (tile_h + 1) : r * (tile_h + 1) + tile_h, c * (tile_w + 1) : c * (tile_w + 1) + tile_w] = pixels[
            index
        ]
    return Image.fromarray(canvas, mode="L"), columns, rows, (tile_h, tile_w)


def grid_layout(channels: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(columns, rows, tile height, tile width) of the grid drawing ``channels`` maps of height x width."""
    columns = math.ceil(math.sqrt(channels))
    rows = math.ceil(channels / columns)
    scale = min(1.0, GRID_SIDE / (columns * width + columns - 1), GRID_SIDE / (rows * height + rows - 1))
    return columns, rows, max(1, round(height * scale)), max(1, round(width * scale))


def layer_maps_bytes(shape: list[int]) -> int:
    """An upper bound on one layer's share of a response, from its output shape (one image)."""
    channels = min(shape[0], MAX_CHANNELS)
    height, width = (shape[1], shape[2]) if len(shape) > 2 else (1, shape[1])
    columns, rows, tile_h, tile_w = grid_layout(channels, height, width)
    pixels = (rows * (tile_h + 1)) * (columns * (tile_w + 1))
    png = pixels + rows * (tile_h + 1) + 1024  # a stored (uncompressed) PNG: each row's filter byte, headers
    return png * 4 // 3 + 8 + channels * 160 + 512  # base64, the data: prefix, statistics, the rest of the row


def layer_maps(path: str, module: nn.Module, output: torch.Tensor, channel_offset: int = 0) -> LayerMaps:
    """Statistics and the PNG grid of one layer's output for one image: 64 channels from ``channel_offset``."""
    maps = output[0].detach().float().cpu()
    if maps.dim() == 2:  # (C, L) from a 1-D convolution: one row per channel
        maps = maps[:, None, :]
    if not 0 <= channel_offset < maps.shape[0]:
        raise InputError(
            f"layer '{path}' has {maps.shape[0]:,} channels; channel_offset {channel_offset} is past them",
            "channel_offset",
        )
    shown = maps[channel_offset : channel_offset + MAX_CHANNELS]
    flat = shown.flatten(1)
    stats = [
        ChannelStats(channel=channel_offset + i, min=float(lo), max=float(hi), mean=float(mu), zero_fraction=float(z))
        for i, (lo, hi, mu, z) in enumerate(
            zip(
                flat.min(dim=1).values.tolist(),
                flat.max(dim=1).values.tolist(),
                flat.mean(dim=1).tolist(),
                (flat == 0).float().mean(dim=1).tolist(),
                strict=True,
            )
        )
    ]
    image, columns, rows, tile = _grid(shown)
    return LayerMaps(
        path=path,
        type=type(module).__name__,
        shape=list(maps.shape),
        channel_offset=channel_offset,
        channels_shown=shown.shape[0],
        columns=columns,
        rows=rows,
        tile=list(tile),
        grid_png=png_data_url(image),
        stats=stats,
    )


def channel_values(path: str, output: torch.Tensor, index: int) -> ChannelValues:
    maps = output[0].detach().float().cpu()
    if maps.dim() == 2:
        maps = maps[:, None, :]
    if not 0 <= index < maps.shape[0]:
        raise InputError(
            f"layer '{path}' has {maps.shape[0]} channels; channel {index} does not exist", "channel.index"
        )
    values = maps[index]
    height, width = values.shape
    if max(height, width) > CHANNEL_SIDE:
        factor = math.ceil(max(height, width) / CHANNEL_SIDE)
        values = torch.nn.functional.avg_pool2d(values[None, None], factor, ceil_mode=True)[0, 0]
    return ChannelValues(
        layer=path,
        index=index,
        shape=list(values.shape),
        values=[[round(v, 5) for v in row] for row in values.tolist()],
        min=float(values.min()),
        max=float(values.max()),
    )


@dataclass
class Capture:
    """Outputs of the hooked layers and of the model."""

    outputs: dict[str, torch.Tensor]
    result: Any


def run_and_capture(model: nn.Module, inputs: tuple[torch.Tensor, ...], paths: list[str]) -> Capture:
    """One real forward under inference_mode, keeping the outputs of ``paths``; hooks always removed."""
    modules = dict(model.named_modules())
    unknown = [p for p in paths if p not in modules]
    if unknown:
        candidates = ", ".join(p for p in list(modules)[1:21])
        raise InputError(
            f"no layer {', '.join(map(repr, unknown))} in this model; its first layers: {candidates}", "layers"
        )
    outputs: dict[str, torch.Tensor] = {}
    handles = []

    def keep(path: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = output[0] if isinstance(output, tuple | list) else output
            if isinstance(tensor, torch.Tensor) and path not in outputs:
                outputs[path] = tensor.detach().clone()

        return hook

    was_training = model.training
    try:
        for path in paths:
            handles.append(modules[path].register_forward_hook(keep(path)))
        model.eval()
        with torch.inference_mode():
            result = model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return Capture(outputs, result)


def check_spatial(path: str, output: torch.Tensor) -> None:
    if output.dim() not in (3, 4):
        raise InputError(
            f"layer '{path}' outputs {tuple(output.shape)}: not a feature map (it needs channels and positions)",
            "layers",
        )


def prediction(result: Any, labels: list[str] | None = None, top: int = 5) -> Prediction | None:
    logits = result[0] if isinstance(result, tuple | list) else result
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 1:
        return None
    probabilities = logits[0].float().softmax(dim=0).cpu()
    order = probabilities.argsort(descending=True)[:top].tolist()
    return Prediction(
        probabilities=[round(p, 6) for p in probabilities.tolist()],
        top=[
            {
                "index": i,
                "label": labels[i] if labels and i < len(labels) else str(i),
                "probability": float(probabilities[i]),
            }
            for i in order
        ],
    )
