"""Decoding uploaded images safely, and turning them into a model's input tensor.

Every transform returns the steps it applied, so the UI can say what the model saw.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from models import ImagePreprocessing

from ..errors import InputError

DIGIT_SIDE = 32  # LeNet-5's input
DIGIT_BOX = 28  # the digit's longest side inside the 32 x 32 square
MAX_ASPECT = 50  # wider or taller than 50:1 is refused: a centre crop of it would be a sliver

# PIL warns (once over its own limit) before it refuses; our limit is checked explicitly on the header.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(InputError):
    """Bytes that are not an image we can read, or one too large to decode."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message, field="image")
        self.status = status


@dataclass
class Prepared:
    """A model input and how it was made."""

    tensor: torch.Tensor  # (1, C, H, W)
    steps: list[str] = field(default_factory=list)
    preview: Image.Image | None = None  # what the model sees, as an image


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open uploaded bytes as an image, refusing non-images, decompression bombs and absurd shapes.

    The size is checked on the header, before any pixel is decoded; nothing global is changed.
    """
    if not data:
        raise ImageError("the image is empty")
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(f"the image has {width * height:,} pixels, over the limit of {max_pixels:,}", 413)
        if max(width, height) > MAX_ASPECT * min(width, height):
            raise ImageError(
                f"the image is {width:,} x {height:,} pixels: wider or taller than {MAX_ASPECT}:1, which no model's "
                "input can be cut from; crop it first"
            )
        image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"the image would decode to more than {max_pixels:,} pixels", 413) from None
    except UnidentifiedImageError:
        raise ImageError("the upload is not an image PIL can read (PNG, JPEG, GIF, BMP, WebP...)", 415) from None
    except (OSError, ValueError, SyntaxError, OverflowError, MemoryError) as exc:
        raise ImageError(f"the image is damaged and cannot be decoded: {str(exc)[:200]}") from None
    return image


def _to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(0)  # (1, C, H, W) in [0, 1]


def photo_input(image: Image.Image, shape: tuple[int, ...], preprocessing: ImagePreprocessing) -> Prepared:
    """A photograph as the model's input, following the architecture's preprocessing facts.

    With a resize ratio (torchvision's ImageNet recipe): the short side is scaled to
    the input side x ratio and the centre cropped; only the source region that
    survives the crop is read and resampled, so the work is bounded by the output.
    Without one: resized to exactly the input size. Then [0, 1], then (x - mean) / std.
    """
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise InputError(f"an image feeds (1 or 3, H, W) inputs, but the model's input is {list(shape)}", "image")
    channels, height, width = shape
    mode = "L" if channels == 1 else "RGB"
    steps = [f"converted to {'greyscale' if channels == 1 else 'RGB'} (was {image.mode})"] if image.mode != mode else []
    if preprocessing.resize_ratio:
        short = round(min(height, width) * preprocessing.resize_ratio)
        scale = short / min(image.size)
        scaled = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        left, top = (scaled[0] - width) // 2, (scaled[1] - height) // 2
        box = (left / scale, top / scale, (left + width) / scale, (top + height) / scale)
        region = image.crop(tuple(round(v) for v in box)).convert(mode)  # the part the crop keeps, at source size
        shifted = (box[0] - round(box[0]), box[1] - round(box[1]), box[2] - round(box[0]), box[3] - round(box[1]))
        prepared = region.resize((width, height), Image.Resampling.BILINEAR, box=shifted)
        steps.append(
            f"resized {image.width} x {image.height} -> {scaled[0]} x {scaled[1]} (short side {short}) and "
            f"centre-cropped to {width} x {height} (only the kept region is resampled)"
        )
    else:
        prepared = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
        steps.append(f"resized {image.width} x {image.height} -> {width} x {height}")
    tensor = _to_tensor(prepared)
    if preprocessing.mean is not None and preprocessing.std is not None:
        mean = torch.tensor(preprocessing.mean[:channels]).view(1, channels, 1, 1)
        std = torch.tensor(preprocessing.std[:channels]).view(1, channels, 1, 1)
        tensor = (tensor - mean) / std
        steps.append(
            f"scaled to [0, 1], then (x - mean) / std with mean {preprocessing.mean} and std {preprocessing.std}"
        )
    else:
        steps.append("scaled to [0, 1] (no normalisation)")
    return Prepared(tensor, steps, prepared)


def digit_grid(image: Image.Image) -> tuple[np.ndarray, list[str]]:
    """An image of one handwritten digit -> scikit-learn's 8 x 8 digits format (values 0..16).

    Those digits were made from 32 x 32 bitmaps by counting the pixels on in each
    4 x 4 block; the same is done here, after centring the digit as they were.
    """
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    steps = ["converted to greyscale"]
    if grey.mean() > 0.5:
        grey = 1.0 - grey
        steps.append("inverted (digits are light on dark)")
    mask = grey > 0.2 * max(float(grey.max()), 1e-6)
    if not mask.any():
        return np.zeros((8, 8), dtype=np.float32), [*steps, "blank image: all zeros"]
    rows, cols = np.where(mask)
    crop = grey[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = crop.shape
    scale = DIGIT_BOX / max(height, width)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize(new, Image.Resampling.LANCZOS))
    square = np.zeros((DIGIT_SIDE, DIGIT_SIDE), dtype=np.float32)
    top, left = (DIGIT_SIDE - new[1]) // 2, (DIGIT_SIDE - new[0]) // 2
    square[top : top + new[1], left : left + new[0]] = resized / 255.0
    steps.append(f"cropped to the digit and centred in a 32 x 32 square (longest side {DIGIT_BOX})")
    blocks = square.reshape(8, 4, 8, 4).mean(axis=(1, 3)) * 16.0  # 0..16, like load_digits()
    steps.append("averaged over 4 x 4 blocks into 8 x 8 values from 0 to 16 (scikit-learn's digits format)")
    return blocks.astype(np.float32), steps


def digits_to_input(digits: np.ndarray | torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(N, 8, 8) values 0..16 -> (N, 1, 32, 32) LeNet inputs: bilinear upscaling, then normalisation."""
    grid = torch.as_tensor(np.asarray(digits, dtype=np.float32)).reshape(-1, 1, 8, 8) / 16.0
    big = F.interpolate(grid, size=(DIGIT_SIDE, DIGIT_SIDE), mode="bilinear", align_corners=False)
    return (big - mean) / std


def digit_input(image: Image.Image, mean: float, std: float) -> Prepared:
    """A drawn or photographed digit, prepared as the bundled LeNet-5 was trained."""
    grid, steps = digit_grid(image)
    tensor = digits_to_input(grid[None], mean, std)
    steps.append(f"upscaled 8 x 8 -> 32 x 32 (bilinear), then (x - {mean:.4f}) / {std:.4f}")
    preview = Image.fromarray((grid / 16.0 * 255).clip(0, 255).astype(np.uint8)).resize((32, 32), Image.NEAREST)
    return Prepared(tensor, steps, preview)
