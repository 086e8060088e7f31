"""Finite Scalar Quantization (Mentzer et al. 2023, https://arxiv.org/abs/2309.15505).

Each latent dim is bounded to a few levels and rounded; the implicit codebook is the
grid of all level combinations, so there is nothing to learn and no auxiliary loss.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import QuantizerOutput, usage_stats


def round_ste(z: torch.Tensor) -> torch.Tensor:
    return z + (z.round() - z).detach()


class FSQ(nn.Module):
    def __init__(self, levels: list[int], eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        levels_t = torch.tensor(levels, dtype=torch.int64)
        # Derived from config, so not saved in checkpoints.
        self.register_buffer("levels", levels_t, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.tensor([1] + levels[:-1]), 0), persistent=False)
        self.dim = len(levels)
        self.vocab_size = int(levels_t.prod())  # the implicit codebook

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        levels = self.levels.to(z.dtype)
        half_l = (levels - 1) * (1 + self.eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Bounded, rounded (straight-through) and scaled to [-1, 1]."""
        half_width = (self.levels // 2).to(z.dtype)
        return round_ste(self.bound(z)) / half_width

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        half_width = self.levels // 2
        digits = (codes * half_width + half_width).round().long()
        return (digits * self.basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        half_width = self.levels // 2
        digits = (indices.long()[..., None] // self.basis) % self.levels
        return (digits - half_width).float() / half_width.float()

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        # Rounding in float32 keeps indices exact under bf16/fp16 autocast.
        z_q = self.quantize(z.float())
        indices = self.codes_to_indices(z_q)
        usage, perplexity = usage_stats(indices, self.vocab_size)
        return QuantizerOutput(z_q.to(z.dtype), indices, z.new_zeros(()), usage, perplexity)
