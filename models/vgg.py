"""VGG (Simonyan and Zisserman, 2014): only 3x3 convolutions, stacked deep.

Five stages of 3x3 convs (padding 1 keeps the size) each closed by a 2x2 max
pool that halves it: 224 -> 112 -> 56 -> 28 -> 14 -> 7. Then 512x7x7 = 25,088
features feed three dense layers. VGG-16 has 138,357,544 parameters, 89% of
them in the dense head. Module names follow torchvision (``features.0``,
``classifier.0``) so its state_dicts load as is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from .registry import IMAGENET_PREPROCESSING, Architecture, ArchitectureConfig, InputKind, Preset, register

# Conv widths per stage; "M" closes a stage with a 2x2 max pool.
STAGES: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

PARAMS = {
    (11, False): 132_863_336,
    (13, False): 133_047_848,
    (16, False): 138_357_544,
    (19, False): 143_667_240,
    (11, True): 132_868_840,
    (13, True): 133_053_736,
    (16, True): 138_365_992,
    (19, True): 143_678_248,
}


class VGGConfig(ArchitectureConfig):
    depth: Literal[11, 13, 16, 19] = Field(16, description="Number of weight layers (convs + dense).")
    batch_norm: bool = Field(False, description="BatchNorm2d after every convolution.")
    num_classes: int = Field(1000, ge=1, le=100_000, description="Number of output classes.")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="Dropout probability in the dense head.")


def make_features(depth: int, batch_norm: bool) -> nn.Sequential:
    """The convolutional trunk: (B, 3, H, W) -> (B, 512, H/32, W/32)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in STAGES[depth]:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))  # halves H and W
            continue
        width = int(item)
        layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=1))  # keeps H and W
        if batch_norm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU(inplace=True))
        channels = width
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """(B, 3, 224, 224) -> (B, num_classes) logits."""

    def __init__(self, config: VGGConfig) -> None:
        super().__init__()
        self.features = make_features(config.depth, config.batch_norm)  # (B, 512, 7, 7)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))  # any input size -> (B, 512, 7, 7)
        self.flatten = nn.Flatten()  # (B, 25088)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),  # (B, 4096)
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(4096, 4096),  # (B, 4096)
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(4096, config.num_classes),  # (B, num_classes)
        )

    def forward(self, x):  # (B, 3, 224, 224)
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


ARCHITECTURE = register(
    Architecture(
        name="vgg",
        title="VGG",
        description="Deep stacks of 3x3 convolutions (Oxford, 2014); VGG-16 has 138 million parameters.",
        config_cls=VGGConfig,
        builder=VGG,
        input_kind=InputKind.IMAGE,
        preprocessing=IMAGENET_PREPROCESSING,
        default_input=lambda c: (3, 224, 224),
        default_params=PARAMS[(16, False)],
        presets=tuple(
            Preset(
                f"vgg{depth}{'_bn' if bn else ''}",
                f"VGG-{depth}{' with BatchNorm' if bn else ''}",
                {"depth": depth, "batch_norm": bn},
                params=PARAMS[(depth, bn)],
            )
            for bn in (False, True)
            for depth in (11, 13, 16, 19)
        ),
    )
)
