"""A tiny TorchScript-compatible module (imported only when torch samples are built).

It has parameters but no ``__constants__``: TorchScript emits constants in set order, which
varies with the hash seed, and the corpus must be byte-for-byte reproducible.
"""

import torch

__all__ = ["TinyNet"]


class TinyNet(torch.nn.Module):
    """y = relu(x @ W.T + b) with fixed weights."""

    def __init__(self) -> None:
        """Create fixed, seed-independent parameters."""
        super().__init__()
        self.weight = torch.nn.Parameter(torch.arange(8, dtype=torch.float32).reshape(2, 4) / 8)
        self.bias = torch.nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer."""
        return torch.relu(x @ self.weight.t() + self.bias)
