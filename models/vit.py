"""Vision Transformer (Dosovitskiy et al., 2020): an image read as a sequence of patches.

The image is cut into (image_size / patch_size)^2 patches, each flattened and
projected to d_model (one strided convolution does both). A learned [class]
token is prepended and learned position embeddings added: 224/16 = 14, so
14^2 + 1 = 197 tokens. Pre-norm encoder blocks follow; the class token's final
state goes through a LayerNorm and a linear head. ViT-B/16 has 86,567,656 parameters.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from .attention import ATTENTION_IMPL_DESCRIPTION, AttentionImpl, MultiHeadAttention
from .registry import IMAGENET_PREPROCESSING, Architecture, ArchitectureConfig, InputKind, Preset, register


class ViTConfig(ArchitectureConfig):
    image_size: int = Field(224, ge=8, le=4096, description="Side of the square input image.")
    patch_size: int = Field(16, ge=1, le=512, description="Side of each square patch; must divide image_size.")
    in_channels: int = Field(3, ge=1, le=16, description="Channels of the input image.")
    d_model: int = Field(768, ge=8, le=16_384, description="Width of every token vector.")
    layers: int = Field(12, ge=1, le=128, description="Encoder blocks.")
    heads: int = Field(12, ge=1, le=256, description="Attention heads; d_model must divide by it.")
    mlp_dim: int = Field(3072, ge=1, le=131_072, description="Hidden width of each block's MLP.")
    num_classes: int = Field(1000, ge=1, le=100_000, description="Number of output classes.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after embeddings and in each MLP.")
    attention: AttentionImpl = Field("sdpa", description=ATTENTION_IMPL_DESCRIPTION)

    @model_validator(mode="after")
    def _check_shapes(self) -> ViTConfig:
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size ({self.patch_size}) must divide image_size ({self.image_size})")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        return self

    @property
    def tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1


class PatchEmbedding(nn.Module):
    """(B, 3, H, W) -> (B, N + 1, C): patch projection, [class] token, position embedding."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(  # one output pixel per patch: (B, C, H/P, W/P)
            config.in_channels, config.d_model, kernel_size=config.patch_size, stride=config.patch_size
        )
        self.flatten = nn.Flatten(start_dim=2)  # (B, C, N)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.d_model))  # (1, 1, C)
        self.position = nn.Parameter(torch.empty(1, config.tokens, config.d_model).normal_(std=0.02))  # (1, N+1, C)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, images):
        x = self.flatten(self.proj(images)).transpose(1, 2)  # (B, N, C)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, C)
        x = torch.cat([cls, x], dim=1)  # (B, N + 1, C)
        if x.shape[1] != self.position.shape[1]:
            raise ValueError(
                f"image gives {x.shape[1]} tokens but the position embedding has {self.position.shape[1]}; "
                "set image_size to the input's size"
            )
        return self.dropout(x + self.position)


class MLPBlock(nn.Module):
    """Linear(C, mlp_dim) -> GELU -> Dropout -> Linear(mlp_dim, C) -> Dropout."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.mlp_dim)
        self.gelu = nn.GELU()
        self.dropout1 = nn.Dropout(config.dropout)
        self.fc2 = nn.Linear(config.mlp_dim, config.d_model)
        self.dropout2 = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout2(self.fc2(self.dropout1(self.gelu(self.fc1(x)))))


class EncoderBlock(nn.Module):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x)): pre-norm, no mask."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, eps=1e-6)
        self.attn = MultiHeadAttention(config.d_model, config.heads, config.dropout, impl=config.attention)
        self.ln_2 = nn.LayerNorm(config.d_model, eps=1e-6)
        self.mlp = MLPBlock(config)

    def forward(self, x):  # (B, N + 1, C)
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    """(B, 3, 224, 224) -> (B, num_classes) logits."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.embeddings = PatchEmbedding(config)  # (B, 197, C)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.layers))
        self.ln = nn.LayerNorm(config.d_model, eps=1e-6)
        self.head = nn.Linear(config.d_model, config.num_classes)  # reads the [class] token

    def forward(self, images):
        x = self.embeddings(images)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x)[:, 0])  # (B, num_classes)


def vit_params(config: ViTConfig) -> int:
    """Closed-form parameter count, for the registry's declared figures."""
    d, m = config.d_model, config.mlp_dim
    patch = config.in_channels * config.patch_size**2 * d + d
    embeddings = patch + d + config.tokens * d
    block = 2 * 2 * d + 4 * (d * d + d) + d * m + m + m * d + d
    return embeddings + config.layers * block + 2 * d + d * config.num_classes + config.num_classes


PRESETS = {
    "vit_b_16": ("ViT-B/16", {}),
    "vit_b_32": ("ViT-B/32", {"patch_size": 32}),
    "vit_l_16": ("ViT-L/16", {"d_model": 1024, "layers": 24, "heads": 16, "mlp_dim": 4096}),
    "vit_h_14": ("ViT-H/14", {"patch_size": 14, "d_model": 1280, "layers": 32, "heads": 16, "mlp_dim": 5120}),
    "vit_tiny_cifar": (
        "A small ViT for 32x32 images",
        {"image_size": 32, "patch_size": 4, "d_model": 192, "layers": 6, "heads": 3, "mlp_dim": 768, "num_classes": 10},
    ),
}

ARCHITECTURE = register(
    Architecture(
        name="vit",
        title="Vision Transformer (ViT)",
        description="An image as a sequence of 16x16 patches through a Transformer encoder; ViT-B/16 by default.",
        config_cls=ViTConfig,
        builder=VisionTransformer,
        input_kind=InputKind.IMAGE,
        preprocessing=IMAGENET_PREPROCESSING,
        attention_modules=(MultiHeadAttention,),
        default_input=lambda c: (c.in_channels, c.image_size, c.image_size),
        default_params=86_567_656,
        presets=tuple(
            Preset(name, title, overrides, vit_params(ViTConfig(**overrides)))
            for name, (title, overrides) in PRESETS.items()
        ),
    )
)
