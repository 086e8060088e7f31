"""Masked Vector Quantization (Nguyen et al. 2023, https://arxiv.org/abs/2301.06626).

Each of the K code vectors c_k is expanded by a small shared mask network into M
hypotheses, one per nonzero binary mask m of length g (M = 2^g - 1):

    mu_k, sigma_k = pre(c_k)                       # mu: (H,), sigma: (g,)
    h_{k,m}       = c_k + out(mu_k + var(m * sigma_k))

so K*D codebook parameters plus one small network give K*M quantization points; the
token id of h_{k,m} is k*M + m. Encoding is the deterministic nearest hypothesis.
Training follows Multiple Hypotheses Dropout (stochastic winner-takes-all): each latent
sees a random subset of the masks, only the nearest hypothesis in that subset (the
winner) gets the codebook and commitment gradient, and the encoder gets the
straight-through gradient. Two departures from a literal reading of the paper, kept
because they train better here: mu lives in the hidden width H (not R^g), and the
hypotheses are residuals around c_k, so a dead code restarted at an encoder output
brings all of its hypotheses next to the data.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .base import (
    QuantizerOutput,
    all_reduce_sum,
    broadcast_from_rank0,
    dead_codes,
    sample_rows,
    update_usage,
    usage_stats,
)


def mask_configurations(bits: int, count: int) -> torch.Tensor:
    """The first `count` nonzero binary masks of length `bits`, fewest ones first: (count, bits)."""
    masks = [m for m in itertools.product((0, 1), repeat=bits) if any(m)]
    masks.sort(key=lambda m: (sum(m), tuple(reversed(m))))
    return torch.tensor(masks[:count], dtype=torch.float32)


class MVQ(nn.Module):
    def __init__(
        self,
        codebook_size: int,
        dim: int,
        mask_bits: int = 4,
        num_masks: int = 0,
        hidden: int = 64,
        subset_ratio: float = 1.0,
        winner: str = "all",
        beta: float = 0.25,
        dead_threshold: float = 0.03,
    ):
        super().__init__()
        self.num_codes, self.dim, self.mask_bits = codebook_size, dim, mask_bits
        self.num_masks = num_masks if 0 < num_masks <= 2**mask_bits - 1 else 2**mask_bits - 1
        self.hidden, self.subset_ratio, self.beta, self.dead_threshold = hidden, subset_ratio, beta, dead_threshold
        self.winner = winner  # training only; encoding always takes the nearest of all K*M hypotheses
        self.codebook_size = self.num_codes * self.num_masks  # token vocabulary K*M

        self.codebook = nn.Parameter(torch.randn(codebook_size, dim))  # (K, D)
        self.pre = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden + mask_bits))
        self.var = nn.Linear(mask_bits, hidden)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))
        self.register_buffer("masks", mask_configurations(mask_bits, self.num_masks), persistent=False)  # (M, g)
        self.register_buffer("usage", torch.ones(codebook_size))  # EMA hits per code vector
        self.register_buffer("initted", torch.tensor(False))

    def expand(self, codes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Hypotheses of code vectors (K, D) under masks (M, g) -> (K, M, D).

        Masks may be fractional: a blend of two configurations interpolates between them.
        """
        mu, sigma = self.pre(codes).split([self.hidden, self.mask_bits], dim=-1)  # (K, H), (K, g)
        spread = self.var(masks[None] * sigma[:, None])  # (K, M, H)
        return codes[:, None] + self.out(mu[:, None] + spread)

    def hypotheses(self) -> torch.Tensor:
        """All K*M quantization points, (K, M, D); they depend only on parameters."""
        return self.expand(self.codebook, self.masks)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.hypotheses().reshape(-1, self.dim))

    def _subset_mask(self, n: int, device: torch.device) -> torch.Tensor:
        """(n, M) bool: the masks each latent may use this step (MH-Dropout)."""
        keep = max(1, round(self.subset_ratio * self.num_masks))
        if keep >= self.num_masks:
            return torch.ones(n, self.num_masks, dtype=torch.bool, device=device)
        order = torch.rand(n, self.num_masks, device=device).argsort(dim=1)[:, :keep]
        return torch.zeros(n, self.num_masks, dtype=torch.bool, device=device).scatter_(1, order, True)

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        self.codebook.copy_(broadcast_from_rank0(sample_rows(flat, self.num_codes)))
        self.initted.fill_(True)

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor) -> None:
        """Move codes that stopped winning onto current encoder outputs (before the graph is built)."""
        dead = dead_codes(self.usage, self.dead_threshold)
        if dead.any():
            self.codebook[dead] = broadcast_from_rank0(sample_rows(flat, int(dead.sum())))
            self.usage[dead] = self.usage.mean()

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        b, t, d = z.shape
        flat = z.reshape(-1, d).float()
        if self.training:
            if bool(self.initted):
                self._restart_dead(flat.detach())
            else:
                self._init_from(flat.detach())
        points = self.hypotheses().reshape(-1, d)  # (K*M, D)
        dist = (flat.detach().pow(2).sum(1, keepdim=True) - 2 * flat.detach() @ points.detach().t()
                + points.detach().pow(2).sum(1)[None])  # (N, K*M)
        if self.training:
            allowed = self._subset_mask(flat.shape[0], z.device)  # (N, M)
            dist = dist.view(-1, self.num_codes, self.num_masks).masked_fill(~allowed[:, None, :], float("inf"))
            if self.winner == "code":  # the nearest code vector c_k first, then the nearest of its sampled masks
                nearest = torch.cdist(flat.detach(), self.codebook.detach()).argmin(1)  # (N,)
                other = torch.arange(self.num_codes, device=z.device)[None] != nearest[:, None]  # (N, K)
                dist = dist.masked_fill(other[:, :, None], float("inf"))
            dist = dist.view(flat.shape[0], -1)
        indices = dist.argmin(1)  # (N,)
        chosen = points[indices]  # only the winners get codebook gradient
        loss = F.mse_loss(chosen, flat.detach()) + self.beta * F.mse_loss(flat, chosen.detach())
        if self.training:
            counts = torch.bincount(indices // self.num_masks, minlength=self.num_codes).float()
            update_usage(self.usage, all_reduce_sum(counts))
        z_q = flat + (chosen - flat).detach()
        usage, perplexity = usage_stats(indices, self.codebook_size)
        return QuantizerOutput(z_q.view(b, t, d).to(z.dtype), indices.view(b, t), loss, usage, perplexity)
