"""What both MVQ readings share: K code vectors expanded by a small mask network into K x M hypotheses.

For code vector c_k and a nonzero binary mask m of length g (M = 2^g - 1 of them), the network gives

    mu_k, sigma_k = pre(c_k)                          # mu: (H,), sigma: (g,)
    residual form:  h_{k,m} = c_k + out(mu_k + var(m * sigma_k))
    mhd form:       h_{k,m} =       out(mu_k + var(m * sigma_k))    (MH-Dropout's form, no skip)

so K*D codebook parameters plus one small network give K*M points. All K*M hypotheses depend only on
parameters, so they are computed once per forward pass. Multiple Hypotheses Dropout (Nguyen et al.,
https://arxiv.org/abs/2301.06626; github dngu7/multiple-hypothesis-dropout) trains them by stochastic
winner-takes-all: each latent sees a random subset of the masks and only the nearest hypothesis wins.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from ..config import HYPOTHESIS_FORMS
from .base import broadcast_from_rank0, dead_codes, sample_rows


def mask_configurations(bits: int, count: int) -> torch.Tensor:
    """The first `count` nonzero binary masks of length `bits`, fewest ones first: (count, bits)."""
    masks = [m for m in itertools.product((0, 1), repeat=bits) if any(m)]
    masks.sort(key=lambda m: (sum(m), tuple(reversed(m))))
    return torch.tensor(masks[:count], dtype=torch.float32)


def random_subset(rows: int, size: int, total: int, device: torch.device) -> torch.Tensor:
    """(rows, total) bool with exactly `size` True per row, chosen uniformly (MH-Dropout's mask subset)."""
    if size >= total:
        return torch.ones(rows, total, dtype=torch.bool, device=device)
    order = torch.rand(rows, total, device=device).argsort(dim=1)[:, :size]
    return torch.zeros(rows, total, dtype=torch.bool, device=device).scatter_(1, order, True)


class MaskedCodebook(nn.Module):
    """K code vectors, the mask network and dead-code restarts; subclasses say what a token is."""

    def __init__(self, num_codes: int, dim: int, mask_bits: int, num_masks: int, hidden: int,
                 subset_ratio: float, beta: float, dead_threshold: float, form: str = "residual"):
        super().__init__()
        if form not in HYPOTHESIS_FORMS:
            raise ValueError(f"hypothesis form must be one of {HYPOTHESIS_FORMS}, got {form!r}")
        self.num_codes, self.dim, self.mask_bits = num_codes, dim, mask_bits
        self.num_masks = num_masks if 0 < num_masks <= 2**mask_bits - 1 else 2**mask_bits - 1
        self.hidden, self.subset_ratio, self.beta, self.dead_threshold = hidden, subset_ratio, beta, dead_threshold
        self.form = form
        self.codebook = nn.Parameter(torch.randn(num_codes, dim))  # (K, D)
        self.pre = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden + mask_bits))
        self.var = nn.Linear(mask_bits, hidden)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))
        self.register_buffer("masks", mask_configurations(mask_bits, self.num_masks), persistent=False)  # (M, g)
        self.register_buffer("usage", torch.ones(num_codes))  # EMA hits per code vector
        self.register_buffer("initted", torch.tensor(False))

    @property
    def subset_size(self) -> int:
        """Masks a latent may use in one training step."""
        return max(1, round(self.subset_ratio * self.num_masks))

    def expand(self, codes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Hypotheses of code vectors (K, D) under masks (M, g) -> (K, M, D).

        Masks may be fractional: a blend of two configurations interpolates between them.
        """
        mu, sigma = self.pre(codes).split([self.hidden, self.mask_bits], dim=-1)  # (K, H), (K, g)
        spread = self.var(masks[None] * sigma[:, None])  # (K, M, H)
        offset = self.out(mu[:, None] + spread)  # (K, M, D)
        return codes[:, None] + offset if self.form == "residual" else offset

    def hypotheses(self) -> torch.Tensor:
        """All K*M quantization points, (K, M, D)."""
        return self.expand(self.codebook, self.masks)

    def distances(self, flat: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Squared L2 distances of latents (N, D) to hypotheses (K, M, D) -> (N, K, M), float32, no gradient."""
        z, p = flat.detach().float(), points.detach().float().reshape(-1, self.dim)
        d = z.pow(2).sum(1, keepdim=True) - 2 * z @ p.t() + p.pow(2).sum(1)[None]
        return d.view(-1, self.num_codes, self.num_masks)

    @torch.no_grad()
    def prepare(self, flat: torch.Tensor) -> None:
        """Training only, before the graph is built: data init on the first batch, then dead-code restarts."""
        if not bool(self.initted):
            self.codebook.copy_(broadcast_from_rank0(sample_rows(flat, self.num_codes)))
            self.initted.fill_(True)
            return
        dead = dead_codes(self.usage, self.dead_threshold)
        if dead.any():
            self.codebook[dead] = broadcast_from_rank0(sample_rows(flat, int(dead.sum())))
            self.usage[dead] = self.usage.mean()
            self.on_restart(dead)

    def on_restart(self, dead: torch.Tensor) -> None:
        """Hook for state kept per code vector."""
