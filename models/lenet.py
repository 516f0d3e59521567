"""LeNet-5 (LeCun et al., 1998): the first convolutional network trained end to end on pixels.

Layers keep the paper's names: C = convolution, S = subsampling, F = fully connected.
On a 1x32x32 digit:

    C1 conv 5x5, 6 maps     -> 6x28x28      156 params
    S2 pool 2x2             -> 6x14x14
    C3 conv 5x5, 16 maps    -> 16x10x10   2,416 params (every C3 map sees all six S2 maps)
    S4 pool 2x2             -> 16x5x5
    C5 conv 5x5, 120 maps   -> 120x1x1   48,120 params
    F6 linear 120 -> 84                  10,164 params
    output linear 84 -> 10                  850 params      total 61,706

``classic`` uses tanh and average pooling as in the paper; ``modern`` uses ReLU
and max pooling, as most courses (and the course notes) describe it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from .registry import PLAIN_PREPROCESSING, Architecture, ArchitectureConfig, InputKind, Preset, register


class LeNet5Config(ArchitectureConfig):
    variant: Literal["classic", "modern"] = Field(
        "classic", description="classic: tanh + average pooling (1998); modern: ReLU + max pooling."
    )
    in_channels: int = Field(1, ge=1, le=16, description="Channels of the input image (1 for grey digits).")
    image_size: int = Field(32, ge=28, le=256, description="Side of the square input image (32 in the paper).")
    num_classes: int = Field(10, ge=1, le=100_000, description="Number of output classes (10 digits).")


class LeNet5(nn.Module):
    """(B, 1, 32, 32) -> (B, num_classes) logits."""

    def __init__(self, config: LeNet5Config) -> None:
        super().__init__()
        side = ((config.image_size - 4) // 2 - 4) // 2 - 4  # spatial side left after C5
        if side < 1:
            raise ValueError(f"image_size {config.image_size} leaves no pixels after C5")
        activation = nn.Tanh if config.variant == "classic" else nn.ReLU
        pool = nn.AvgPool2d if config.variant == "classic" else nn.MaxPool2d
        self.c1 = nn.Conv2d(config.in_channels, 6, kernel_size=5)  # (B, 6, 28, 28)
        self.act1 = activation()
        self.s2 = pool(kernel_size=2, stride=2)  # (B, 6, 14, 14)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)  # (B, 16, 10, 10)
        self.act3 = activation()
        self.s4 = pool(kernel_size=2, stride=2)  # (B, 16, 5, 5)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)  # (B, 120, 1, 1)
        self.act5 = activation()
        self.flatten = nn.Flatten()  # (B, 120)
        self.f6 = nn.Linear(120 * side * side, 84)  # (B, 84)
        self.act6 = activation()
        self.output = nn.Linear(84, config.num_classes)  # (B, 10) logits: no activation

    def forward(self, x):  # (B, 1, 32, 32)
        x = self.s2(self.act1(self.c1(x)))
        x = self.s4(self.act3(self.c3(x)))
        x = self.act5(self.c5(x))
        x = self.act6(self.f6(self.flatten(x)))
        return self.output(x)


ARCHITECTURE = register(
    Architecture(
        name="lenet5",
        title="LeNet-5",
        description="LeCun's 1998 digit recogniser: two conv/pool stages and three dense layers, 61,706 parameters.",
        config_cls=LeNet5Config,
        builder=LeNet5,
        input_kind=InputKind.IMAGE,
        preprocessing=PLAIN_PREPROCESSING,
        default_input=lambda c: (c.in_channels, c.image_size, c.image_size),
        default_params=61_706,
        layer_notes=lambda config: {
            "": "course notes 4.3 say LeNet has a few hundred thousand parameters ('quelques centaines de "
            "milliers'): LeNet-5 has about 60 thousand, 61,706 here",
            "c3": "the 1998 paper connects each C3 map to a chosen subset of S2's 6 maps (1,516 parameters); this "
            "model connects every map (2,416), as most implementations do",
            "output": "the paper's output is 10 RBF units (distances to fixed codes); this model uses a linear "
            "layer, as most implementations do",
        },
        presets=(
            Preset(
                "classic",
                "LeNet-5, the 1998 layout (tanh, average pooling; C3 fully connected, a linear output)",
                {"variant": "classic"},
                params=61_706,
            ),
            Preset("modern", "LeNet-5 with ReLU and max pooling", {"variant": "modern"}, params=61_706),
        ),
    )
)
