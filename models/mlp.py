"""Multilayer perceptron: alternating affine maps x -> Wx + b and non-linearities.

The default is the course's quiz network, R^10 -> R^200 -> R^100 -> R^1:
10*200 + 200*100 + 100*1 = 22,100 weights and 200 + 100 + 1 = 301 biases.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Literal

from pydantic import Field
from torch import nn

from .registry import Architecture, ArchitectureConfig, InputKind, Preset, register

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


class MLPConfig(ArchitectureConfig):
    input_dim: int = Field(10, ge=1, le=1_000_000, description="Size of one input vector.")
    hidden: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(
        default_factory=lambda: [200, 100],
        max_length=64,
        description="Width of each hidden layer, in order.",
    )
    output_dim: int = Field(1, ge=1, le=1_000_000, description="Size of the output (classes or targets).")
    activation: Literal["relu", "sigmoid", "tanh", "gelu"] = Field(
        "relu", description="Non-linearity after each hidden layer."
    )
    bias: bool = Field(True, description="Give every linear layer a bias vector b.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability after each activation (0 = none).")
    batch_norm: bool = Field(False, description="BatchNorm1d between each hidden linear layer and its activation.")


class HiddenLayer(nn.Module):
    """One hidden layer: Linear -> [BatchNorm] -> activation -> [Dropout]."""

    def __init__(self, d_in: int, d_out: int, config: MLPConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=config.bias)  # (B, d_in) -> (B, d_out)
        self.norm = nn.BatchNorm1d(d_out) if config.batch_norm else None
        self.activation = ACTIVATIONS[config.activation]()
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else None

    def forward(self, x):
        x = self.linear(x)
        if self.norm is not None:
            x = self.norm(x)
        x = self.activation(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return x


class MLP(nn.Module):
    """input (B, input_dim) -> hidden layers -> output (B, output_dim)."""

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        widths = [config.input_dim, *config.hidden]
        self.layers = nn.ModuleList(HiddenLayer(a, b, config) for a, b in pairwise(widths))
        self.output = nn.Linear(widths[-1], config.output_dim, bias=config.bias)  # no activation: logits

    def forward(self, x):  # (B, input_dim)
        for layer in self.layers:
            x = layer(x)  # (B, hidden[i])
        return self.output(x)  # (B, output_dim)


ARCHITECTURE = register(
    Architecture(
        name="mlp",
        title="Multilayer perceptron",
        description="Fully connected layers with a non-linearity between them: the course's first network.",
        config_cls=MLPConfig,
        builder=MLP,
        input_kind=InputKind.VECTOR,
        default_input=lambda c: (c.input_dim,),
        default_params=22_401,
        presets=(
            Preset("quiz", "Course quiz: 10 -> 200 -> 100 -> 1", {}, params=22_401),
            Preset(
                "mnist",
                "MNIST classifier: 784 -> 512 -> 256 -> 10",
                {"input_dim": 784, "hidden": [512, 256], "output_dim": 10},
                params=784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10,
            ),
            Preset(
                "deep-bn",
                "Deep MLP with BatchNorm and dropout",
                {
                    "input_dim": 784,
                    "hidden": [1024, 1024, 512, 256],
                    "output_dim": 10,
                    "batch_norm": True,
                    "dropout": 0.2,
                },
            ),
        ),
    )
)
