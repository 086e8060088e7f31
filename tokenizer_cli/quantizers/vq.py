"""Vector quantization, VQ-VAE style (van den Oord et al. 2017, https://arxiv.org/abs/1711.00937).

Nearest-neighbour codebook with straight-through gradients and a commitment loss; the
codebook follows its assigned latents by EMA with Laplace smoothing (Razavi et al. 2019),
is initialised from the first batch of encoder outputs, and dead codes are restarted
from current encoder outputs, so that the baseline is not crippled by collapse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import (
    QuantizerOutput,
    all_reduce_sum,
    broadcast_from_rank0,
    dead_codes,
    nearest_codes,
    sample_rows,
    update_usage,
    usage_stats,
)


class VQ(nn.Module):
    def __init__(
        self,
        num_codes: int,
        dim: int,
        beta: float = 0.25,
        decay: float = 0.99,
        dead_threshold: float = 0.03,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.num_codes, self.dim = num_codes, dim
        self.vocab_size = num_codes  # a token is a code id
        self.beta, self.decay, self.dead_threshold, self.eps = beta, decay, dead_threshold, eps
        self.register_buffer("codebook", torch.randn(num_codes, dim))  # (K, D)
        self.register_buffer("cluster_size", torch.ones(num_codes))  # EMA of assignments per code
        self.register_buffer("embed_sum", self.codebook.clone())  # EMA of the sum of assigned latents
        self.register_buffer("usage", torch.ones(num_codes))  # EMA of hits, for dead-code restarts
        self.register_buffer("initted", torch.tensor(False))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.codebook)

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        return nearest_codes(flat, self.codebook)

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        self.codebook.copy_(broadcast_from_rank0(sample_rows(flat, self.num_codes)))
        self.embed_sum.copy_(self.codebook)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        # per-code counts and sums by index (an N x K one-hot matrix would be 400 MB at K=2^14, N=6,272)
        counts = all_reduce_sum(torch.bincount(indices, minlength=self.num_codes).to(flat.dtype))
        sums = all_reduce_sum(torch.zeros_like(self.embed_sum).index_add_(0, indices, flat))  # (K, D)
        self.cluster_size.lerp_(counts, 1 - self.decay)
        self.embed_sum.lerp_(sums, 1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])

        update_usage(self.usage, counts)
        dead = dead_codes(self.usage, self.dead_threshold)
        if dead.any():
            fresh = broadcast_from_rank0(sample_rows(flat, int(dead.sum())))
            self.codebook[dead] = fresh
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0
            self.usage[dead] = self.usage.mean()  # a fair share: a grace period before it can die again

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        b, t, d = z.shape
        flat = z.reshape(-1, d).float()
        if self.training and not bool(self.initted):
            self._init_from(flat.detach())
        indices = self.nearest(flat.detach())
        z_q = self.indices_to_codes(indices)
        if self.training:
            self._ema_update(flat.detach(), indices)
        loss = self.beta * F.mse_loss(flat, z_q.detach())
        z_q = flat + (z_q - flat).detach()
        usage, perplexity = usage_stats(indices, self.num_codes)
        return QuantizerOutput(z_q.view(b, t, d).to(z.dtype), indices.view(b, t), loss, usage, perplexity)
