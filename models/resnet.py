"""ResNet (He et al., 2015): deep convolutional networks made trainable by skip connections.

Each block outputs f(x) + x, so gradients always have a direct path back.
Stem: 7x7 conv, stride 2 (224 -> 112), 3x3 max pool, stride 2 (-> 56); then four
stages of 64, 128, 256 and 512 base channels, each after the first halving the
size with a stride-2 block whose shortcut is a 1x1 stride-2 conv + BN
(56 -> 28 -> 14 -> 7); a global average pool and one dense layer close it.

ResNet-18/34 use the basic block (two 3x3 convs); ResNet-50/101/152 the
bottleneck (1x1 reduce, 3x3, 1x1 expand by 4). ResNeXt (``groups``) and Wide
ResNet (``width_per_group``) are bottleneck variants and ship as presets.
Module names mirror torchvision so its state_dicts load as is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from .registry import IMAGENET_PREPROCESSING, Architecture, ArchitectureConfig, InputKind, Preset, register

# Blocks per stage, and whether the depth uses bottleneck blocks.
LAYOUTS: dict[int, tuple[list[int], bool]] = {
    18: ([2, 2, 2, 2], False),
    34: ([3, 4, 6, 3], False),
    50: ([3, 4, 6, 3], True),
    101: ([3, 4, 23, 3], True),
    152: ([3, 8, 36, 3], True),
}


class ResNetConfig(ArchitectureConfig):
    depth: Literal[18, 34, 50, 101, 152] = Field(18, description="Number of weight layers; 50 and up use bottlenecks.")
    groups: int = Field(1, ge=1, le=128, description="Groups of the 3x3 conv in each bottleneck (ResNeXt cardinality).")
    width_per_group: int = Field(
        64, ge=1, le=512, description="Channels per group in each bottleneck (64 = ResNet, 128 = Wide ResNet-2)."
    )
    num_classes: int = Field(1000, ge=1, le=100_000, description="Number of output classes.")


def conv3x3(c_in: int, c_out: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1: keeps the size at stride 1, halves it at stride 2."""
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution: mixes channels, changes their number."""
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)


class Shortcut(nn.Sequential):
    """Projection shortcut (1x1 conv + BN) for blocks that change size or width."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x)); out channels = planes."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int, groups: int, base_width: int) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("the basic block (depth 18 and 34) supports only groups=1 and width_per_group=64")
        self.conv1 = conv3x3(c_in, planes, stride)  # (B, planes, H/stride, W/stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)  # same size
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = Shortcut(c_in, planes, stride) if stride != 1 or c_in != planes else None
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)  # the residual connection


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (grouped, strided) -> 1x1 expand x4, plus the shortcut."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int, groups: int, base_width: int) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups  # inner width of the 3x3 conv
        c_out = planes * self.expansion
        self.conv1 = conv1x1(c_in, width)  # (B, width, H, W)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width, stride, groups)  # (B, width, H/stride, W/stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(width, c_out)  # (B, 4*planes, H/stride, W/stride)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.downsample = Shortcut(c_in, c_out, stride) if stride != 1 or c_in != c_out else None
        self.relu3 = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)  # the residual connection


class ResNet(nn.Module):
    """(B, 3, 224, 224) -> (B, num_classes) logits."""

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        blocks, bottleneck = LAYOUTS[config.depth]
        block = Bottleneck if bottleneck else BasicBlock
        self._c_in = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)  # (B, 64, 112, 112)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # (B, 64, 56, 56)
        self.layer1 = self._stage(block, 64, blocks[0], 1, config)  # (B, 64*e, 56, 56)
        self.layer2 = self._stage(block, 128, blocks[1], 2, config)  # (B, 128*e, 28, 28)
        self.layer3 = self._stage(block, 256, blocks[2], 2, config)  # (B, 256*e, 14, 14)
        self.layer4 = self._stage(block, 512, blocks[3], 2, config)  # (B, 512*e, 7, 7)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # (B, 512*e, 1, 1)
        self.flatten = nn.Flatten()  # (B, 512*e)
        self.fc = nn.Linear(512 * block.expansion, config.num_classes)  # (B, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _stage(self, block, planes: int, count: int, stride: int, config: ResNetConfig) -> nn.Sequential:
        layers = []
        for i in range(count):
            layers.append(block(self._c_in, planes, stride if i == 0 else 1, config.groups, config.width_per_group))
            self._c_in = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):  # (B, 3, 224, 224)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def stage_outputs(model: nn.Module) -> list[str]:
    """Feature maps worth showing: the stem, then each stage's output (not every one of 50+ convolutions)."""
    names = dict(model.named_children())
    return [name for name in ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4") if name in names]


ARCHITECTURE = register(
    Architecture(
        name="resnet",
        title="ResNet",
        description="Residual networks (2015): blocks that learn f(x) + x, trainable at 18 to 152 layers.",
        config_cls=ResNetConfig,
        builder=ResNet,
        input_kind=InputKind.IMAGE,
        default_input=lambda c: (3, 224, 224),
        default_params=11_689_512,
        preprocessing=IMAGENET_PREPROCESSING,
        feature_layers=stage_outputs,
        presets=(
            Preset("resnet18", "ResNet-18", {"depth": 18}, 11_689_512),
            Preset("resnet34", "ResNet-34", {"depth": 34}, 21_797_672),
            Preset("resnet50", "ResNet-50", {"depth": 50}, 25_557_032),
            Preset("resnet101", "ResNet-101", {"depth": 101}, 44_549_160),
            Preset("resnet152", "ResNet-152", {"depth": 152}, 60_192_808),
            Preset(
                "resnext50_32x4d", "ResNeXt-50 32x4d", {"depth": 50, "groups": 32, "width_per_group": 4}, 25_028_904
            ),
            Preset(
                "resnext101_32x8d", "ResNeXt-101 32x8d", {"depth": 101, "groups": 32, "width_per_group": 8}, 88_791_336
            ),
            Preset("wide_resnet50_2", "Wide ResNet-50-2", {"depth": 50, "width_per_group": 128}, 68_883_240),
            Preset("wide_resnet101_2", "Wide ResNet-101-2", {"depth": 101, "width_per_group": 128}, 126_886_696),
        ),
    )
)
