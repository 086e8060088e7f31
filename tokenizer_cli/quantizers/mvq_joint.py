"""Masked Vector Quantization with joint tokens: the mask is part of the token (kind "mvq-joint").

K code vectors x M masks give K*M hypotheses (see masks.py); the token id of h_{k,m} is k*M + m, so the
token vocabulary, and the prior's, is K*M. Encoding is the deterministic nearest of all hypotheses.
Training is MH-Dropout's stochastic winner-takes-all over a random subset of the masks per latent (the
subset ratio; 1.0, every mask, measured best for this reading); only the winner gets the codebook and
commitment gradient and the encoder gets the straight-through gradient. Measured on Fashion-MNIST,
this makes MVQ a network-generated K*M codebook: it beats VQ with K codes but ties VQ and FSQ with the
same K*M vocabulary at 2 tokens. The paper's reading, where a token is the code id alone, is mvq.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import QuantizerOutput, all_reduce_sum, update_usage, usage_stats
from .masks import MaskedCodebook, random_subset


class JointMVQ(MaskedCodebook):
    kind = "mvq-joint"

    def __init__(self, num_codes: int, dim: int, mask_bits: int = 4, num_masks: int = 0, hidden: int = 64,
                 subset_ratio: float = 1.0, winner: str = "all", beta: float = 0.25, dead_threshold: float = 0.03,
                 form: str = "residual"):
        super().__init__(num_codes, dim, mask_bits, num_masks, hidden, subset_ratio, beta, dead_threshold, form)
        self.winner = winner  # training only; encoding always takes the nearest of all K*M hypotheses
        self.vocab_size = self.num_codes * self.num_masks

    def indices_to_codes(self, indices: torch.Tensor, masks: torch.Tensor | None = None, **_) -> torch.Tensor:
        return F.embedding(indices, self.hypotheses().reshape(-1, self.dim))

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        b, t, d = z.shape
        flat = z.reshape(-1, d).float()
        if self.training:
            self.prepare(flat.detach())
        points = self.hypotheses().reshape(-1, d)  # (K*M, D)
        dist = self.distances(flat, points)  # (N, K, M)
        if self.training:
            allowed = random_subset(flat.shape[0], self.subset_size, self.num_masks, z.device)  # (N, M)
            dist = dist.masked_fill(~allowed[:, None, :], float("inf"))
            if self.winner == "code":  # the nearest code vector c_k first, then the nearest of its sampled masks
                nearest = torch.cdist(flat.detach(), self.codebook.detach()).argmin(1)  # (N,)
                other = torch.arange(self.num_codes, device=z.device)[None] != nearest[:, None]  # (N, K)
                dist = dist.masked_fill(other[:, :, None], float("inf"))
        indices = dist.view(flat.shape[0], -1).argmin(1)  # (N,)
        chosen = points[indices]  # only the winners get codebook gradient
        loss = F.mse_loss(chosen, flat.detach()) + self.beta * F.mse_loss(flat, chosen.detach())
        if self.training:
            counts = torch.bincount(indices // self.num_masks, minlength=self.num_codes).float()
            update_usage(self.usage, all_reduce_sum(counts))
        z_q = flat + (chosen - flat).detach()
        usage, perplexity = usage_stats(indices, self.vocab_size)
        return QuantizerOutput(z_q.view(b, t, d).to(z.dtype), indices.view(b, t), loss, usage, perplexity)
