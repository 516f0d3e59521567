"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012).

``original`` is the paper's network without the two-GPU split, as the course
works it through on a 3x224x224 image:

    conv1  96 x 11x11, stride 4, pad 2  -> 96x55x55      34,944 params
    pool1  3x3, stride 2                -> 96x27x27
    conv2 256 x 5x5, pad 2              -> 256x27x27    614,656
    pool2                               -> 256x13x13
    conv3 384 x 3x3, pad 1              -> 384x13x13    885,120
    conv4 384 x 3x3, pad 1              -> 384x13x13  1,327,488
    conv5 256 x 3x3, pad 1              -> 256x13x13    884,992
    pool3                               -> 256x6x6
    flatten                             -> 9216
    fc1 9216 -> 4096                             37,752,832
    fc2 4096 -> 4096                             16,781,312
    fc3 4096 -> 1000 (logits, no ReLU)            4,097,000    total 62,378,344

The paper also normalises the first two conv outputs with local response
normalisation (no parameters); ``lrn=False`` leaves it out.

``torchvision`` is the single-GPU variant torchvision ships (64/192/384/256/256
channels, an adaptive 6x6 average pool; 61,100,840 params). Its modules carry
torchvision's names (``features.0``, ``classifier.1``...) so its state_dict loads as is.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from pydantic import Field
from torch import nn

from .registry import IMAGENET_PREPROCESSING, Architecture, ArchitectureConfig, InputKind, Preset, register


class AlexNetConfig(ArchitectureConfig):
    variant: Literal["original", "torchvision"] = Field(
        "original", description="original: the 2012 paper (96/256/384/384/256); torchvision: 64/192/384/256/256."
    )
    num_classes: int = Field(1000, ge=1, le=100_000, description="Number of output classes.")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="Dropout probability before fc1 and fc2.")
    lrn: bool = Field(True, description="Local response normalisation after conv1 and conv2 (original variant only).")


def _original_features(lrn: bool) -> nn.Sequential:
    layers: list[tuple[str, nn.Module]] = [
        ("conv1", nn.Conv2d(3, 96, kernel_size=11, stride=4, padding=2)),  # (B, 96, 55, 55)
        ("relu1", nn.ReLU(inplace=True)),
        ("lrn1", nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)),
        ("pool1", nn.MaxPool2d(kernel_size=3, stride=2)),  # (B, 96, 27, 27)
        ("conv2", nn.Conv2d(96, 256, kernel_size=5, padding=2)),  # (B, 256, 27, 27)
        ("relu2", nn.ReLU(inplace=True)),
        ("lrn2", nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)),
        ("pool2", nn.MaxPool2d(kernel_size=3, stride=2)),  # (B, 256, 13, 13)
        ("conv3", nn.Conv2d(256, 384, kernel_size=3, padding=1)),  # (B, 384, 13, 13)
        ("relu3", nn.ReLU(inplace=True)),
        ("conv4", nn.Conv2d(384, 384, kernel_size=3, padding=1)),  # (B, 384, 13, 13)
        ("relu4", nn.ReLU(inplace=True)),
        ("conv5", nn.Conv2d(384, 256, kernel_size=3, padding=1)),  # (B, 256, 13, 13)
        ("relu5", nn.ReLU(inplace=True)),
        ("pool3", nn.MaxPool2d(kernel_size=3, stride=2)),  # (B, 256, 6, 6)
    ]
    if not lrn:
        layers = [(name, layer) for name, layer in layers if not name.startswith("lrn")]
    return nn.Sequential(OrderedDict(layers))


def _original_classifier(num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            [
                ("dropout1", nn.Dropout(dropout)),
                ("fc1", nn.Linear(256 * 6 * 6, 4096)),  # (B, 4096)
                ("relu6", nn.ReLU(inplace=True)),
                ("dropout2", nn.Dropout(dropout)),
                ("fc2", nn.Linear(4096, 4096)),  # (B, 4096)
                ("relu7", nn.ReLU(inplace=True)),
                ("fc3", nn.Linear(4096, num_classes)),  # (B, num_classes) logits: no ReLU
            ]
        )
    )


class AlexNet(nn.Module):
    """(B, 3, 224, 224) -> (B, num_classes) logits."""

    def __init__(self, config: AlexNetConfig) -> None:
        super().__init__()
        if config.variant == "original":
            self.features = _original_features(config.lrn)  # (B, 256, 6, 6)
            self.avgpool = None
        else:
            self.features = nn.Sequential(  # torchvision's indices: 0, 3, 6, 8, 10 are convs
                nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # (B, 64, 55, 55)
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 64, 27, 27)
                nn.Conv2d(64, 192, kernel_size=5, padding=2),  # (B, 192, 27, 27)
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 192, 13, 13)
                nn.Conv2d(192, 384, kernel_size=3, padding=1),  # (B, 384, 13, 13)
                nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, kernel_size=3, padding=1),  # (B, 256, 13, 13)
                nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, kernel_size=3, padding=1),  # (B, 256, 13, 13)
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 256, 6, 6)
            )
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))  # any input size -> (B, 256, 6, 6)
        self.flatten = nn.Flatten()  # (B, 9216)
        if config.variant == "original":
            self.classifier = _original_classifier(config.num_classes, config.dropout)
        else:
            self.classifier = nn.Sequential(
                nn.Dropout(config.dropout),
                nn.Linear(256 * 6 * 6, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(config.dropout),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Linear(4096, config.num_classes),
            )

    def forward(self, x):  # (B, 3, 224, 224)
        x = self.features(x)
        if self.avgpool is not None:
            x = self.avgpool(x)
        return self.classifier(self.flatten(x))


def layer_notes(config: AlexNetConfig) -> dict[str, str]:
    """Where the course notes' AlexNet figures differ from this model's (the paper's)."""
    notes = {
        "classifier.fc3": "course notes 4.4 follow fc3 with a ReLU: the output layer has none, its logits go to "
        "softmax / cross-entropy",
    }
    if config.variant == "original":
        notes["features.conv2"] = (
            "course notes 4.4 give this output as 27^2 x 96 (and write the padding as 2^2): at 224 x 224 it is "
            "27 x 27 x 256, C_out = 256, from floor((27 + 2*2 - 5)/1) + 1 = 27"
        )
        notes["features.pool2"] = "course notes 4.4 give 13^2 x 96: it has the 256 channels of conv2"
    return notes


ARCHITECTURE = register(
    Architecture(
        name="alexnet",
        title="AlexNet",
        description="The 2012 ImageNet winner: five convolutions, three huge dense layers, ReLU and dropout.",
        config_cls=AlexNetConfig,
        builder=AlexNet,
        input_kind=InputKind.IMAGE,
        preprocessing=IMAGENET_PREPROCESSING,
        default_input=lambda c: (3, 224, 224),
        default_params=62_378_344,
        layer_notes=layer_notes,
        presets=(
            Preset("original", "AlexNet as in the 2012 paper (single tower)", {"variant": "original"}, 62_378_344),
            Preset("torchvision", "torchvision's AlexNet", {"variant": "torchvision"}, 61_100_840),
        ),
    )
)
