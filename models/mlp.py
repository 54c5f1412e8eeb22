"""Fully connected network; with no hidden layer it is the linear classifier W x + b."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    # no nonlinearity: any depth collapses to one linear map (the product of the weight matrices)
    "none": nn.Identity,
}


@dataclass
class MLPConfig:
    """Everything that fixes the architecture; handed to `MLP` whole and logged as params."""

    input_dim: int
    n_classes: int
    hidden_sizes: list[int] = field(default_factory=list)
    activation: str = "relu"
    dropout: float = 0.0
    batchnorm: bool = False

    def __post_init__(self):
        if self.input_dim < 1 or self.n_classes < 1:
            raise ValueError(f"input_dim and n_classes must be >= 1; got {self.input_dim} and {self.n_classes}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}")
        if any(size < 1 for size in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive integers; got {self.hidden_sizes}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")


class MLP(nn.Module):
    """input -> [Linear -> (batch norm) -> activation -> dropout] * len(hidden_sizes) -> Linear -> class scores."""

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = config.input_dim
        for hidden in config.hidden_sizes:
            layers.append(nn.Linear(width, hidden))
            if config.batchnorm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(ACTIVATIONS[config.activation]())
            if config.dropout:
                layers.append(nn.Dropout(config.dropout))
            width = hidden
        layers.append(nn.Linear(width, config.n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def weight_matrices(self) -> list[torch.Tensor]:
        return [module.weight for module in self.layers if isinstance(module, nn.Linear)]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class StandardizedClassifier(nn.Module):
    """The deployable model: standardize raw features with train statistics, then score with the MLP."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, model: MLP):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model((features - self.mean) / self.std)
