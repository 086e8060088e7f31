"""Masked Vector Quantization, the paper's reading (Nguyen et al. 2023, https://arxiv.org/abs/2301.06626).

A token is a code id k in [0, K): the token vocabulary, and the prior's, is K. Each code vector c_k has
M = 2^g - 1 hypotheses h_{k,m} made by the mask network (masks.py); the mask m is a stochastic
hypothesis around the code, not part of the token. This follows the author's released MH-Dropout code
(dngu7/multiple-hypothesis-dropout, dngu7/honeyplotnet): a random subset of the masks each training
step, the nearest hypothesis in the subset wins, only the winner is trained, and the reconstruction
loss reaches the mask network through the winner.

- Encoding takes the nearest of all K*M hypotheses and returns its code id as the token and its mask
  beside it, so decoding with the stored masks is exact.
- Decoding without masks (every prior sample) draws them: from p(m | k), the EMA of how often mask m
  won for code k in training (learned), or uniformly, with a temperature and a generator.
- mask_scope "token": every latent has its own mask subset and winner; "image": one subset and one
  winning mask per image, shared by all of its tokens (as honeyplotnet does).
- gradient "winner": z_q has the value of the winning hypothesis, the encoder gets the straight-through
  gradient and the hypothesis (codebook and mask network) gets the decoder's gradient as well;
  "straight-through": the decoder's gradient stops at z_q, as in VQ-VAE.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import MASK_GRADIENTS as GRADIENTS
from ..config import MASK_SCOPES
from .base import GREEDY_BELOW, QuantizerOutput, all_reduce_sum, update_usage, usage_stats
from .masks import MaskedCodebook, random_subset

MASK_SAMPLING = ("learned", "uniform")


class MVQ(MaskedCodebook):
    kind = "mvq"

    def __init__(self, num_codes: int, dim: int, mask_bits: int = 4, num_masks: int = 0, hidden: int = 64,
                 subset_ratio: float = 0.5, beta: float = 0.25, dead_threshold: float = 0.03,
                 form: str = "residual", mask_scope: str = "token", gradient: str = "winner"):
        super().__init__(num_codes, dim, mask_bits, num_masks, hidden, subset_ratio, beta, dead_threshold, form)
        if mask_scope not in MASK_SCOPES:
            raise ValueError(f"mask scope must be one of {MASK_SCOPES}, got {mask_scope!r}")
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
        self.mask_scope, self.gradient = mask_scope, gradient
        self.vocab_size = num_codes
        self.register_buffer("mask_counts", torch.ones(num_codes, self.num_masks))  # (K, M) EMA wins: p(m | k)

    def on_restart(self, dead: torch.Tensor) -> None:
        self.mask_counts[dead] = self.mask_counts[dead].mean(1, keepdim=True).clamp_min(1e-3)

    def mask_probs(self) -> torch.Tensor:
        """p(m | k), (K, M): how often each mask won for each code in training (EMA)."""
        counts = self.mask_counts.clamp_min(0) + 1e-6
        return counts / counts.sum(1, keepdim=True)

    def sample_masks(self, indices: torch.Tensor, generator: torch.Generator | None = None,
                     temperature: float = 1.0, sampling: str = "learned") -> torch.Tensor:
        """Masks (B, T) int64 for code ids (B, T): drawn from p(m | k) ("learned") or uniformly.

        temperature 0 takes the most likely mask; with mask_scope "image" one mask is drawn per image,
        from the product of p(m | k_t) over its tokens.
        """
        if sampling not in MASK_SAMPLING:
            raise ValueError(f"mask sampling must be one of {MASK_SAMPLING}, got {sampling!r}")
        if not (temperature >= 0 and math.isfinite(temperature)):
            raise ValueError(f"mask temperature must be a finite number >= 0, got {temperature!r}")
        b, t = indices.shape
        if sampling == "uniform":
            logp = torch.zeros(b, t, self.num_masks, device=indices.device)
        else:
            logp = self.mask_probs().log()[indices]  # (B, T, M)
        if self.mask_scope == "image":
            logp = logp.sum(1, keepdim=True)  # (B, 1, M)
        if temperature < GREEDY_BELOW:
            masks = logp.argmax(-1)
        else:
            probs = F.softmax((logp - logp.amax(-1, keepdim=True)) / temperature, dim=-1)  # shifted: no -inf/-inf
            masks = torch.multinomial(probs.reshape(-1, self.num_masks), 1, generator=generator).view(logp.shape[:2])
        return masks.expand(b, t).contiguous()

    def indices_to_codes(self, indices: torch.Tensor, masks: torch.Tensor | None = None,
                         generator: torch.Generator | None = None, temperature: float = 1.0,
                         sampling: str = "learned") -> torch.Tensor:
        """Latents (B, T, D) of code ids (B, T) under masks (B, T), drawn when not given."""
        if masks is None:
            masks = self.sample_masks(indices, generator, temperature, sampling)
        flat_ids = indices * self.num_masks + masks.to(indices.device)
        return F.embedding(flat_ids, self.hypotheses().reshape(-1, self.dim))

    def _winners(self, dist: torch.Tensor, b: int, t: int, allowed: torch.Tensor | None):
        """(code ids, masks), each (N,), of the nearest hypotheses in dist (N, K, M) among `allowed` masks."""
        k_count, m_count = self.num_codes, self.num_masks
        if self.mask_scope == "image":
            per_mask = dist.view(b, t, k_count, m_count).amin(2).sum(1)  # (B, M): cost of an image under mask m
            if allowed is not None:
                per_mask = per_mask.masked_fill(~allowed, float("inf"))
            masks = per_mask.argmin(1).repeat_interleave(t)  # (N,)
            codes = dist.gather(2, masks.view(-1, 1, 1).expand(-1, k_count, 1)).squeeze(2).argmin(1)  # (N,)
            return codes, masks
        if allowed is not None:
            dist = dist.masked_fill(~allowed[:, None, :], float("inf"))
        flat = dist.view(dist.shape[0], -1).argmin(1)  # (N,)
        return flat // m_count, flat % m_count

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        b, t, d = z.shape
        flat = z.reshape(-1, d).float()
        if self.training:
            self.prepare(flat.detach())
        points = self.hypotheses()  # (K, M, D)
        dist = self.distances(flat, points)  # (N, K, M)
        codes, masks = self._winners(dist, b, t, None)  # deterministic: what encoding stores
        if self.training:
            rows = b if self.mask_scope == "image" else flat.shape[0]
            allowed = random_subset(rows, self.subset_size, self.num_masks, z.device)  # MH-Dropout
            win_codes, win_masks = self._winners(dist, b, t, allowed)
            hits = torch.zeros(self.num_codes * self.num_masks, device=z.device)
            hits.index_add_(0, codes * self.num_masks + masks, torch.ones_like(codes, dtype=hits.dtype))
            hits = all_reduce_sum(hits).view(self.num_codes, self.num_masks)
            update_usage(self.usage, hits.sum(1))
            update_usage(self.mask_counts, hits)
        else:
            win_codes, win_masks = codes, masks
        chosen = points[win_codes, win_masks]  # (N, D); only the winners are trained
        loss = F.mse_loss(chosen, flat.detach()) + self.beta * F.mse_loss(flat, chosen.detach())
        if self.gradient == "winner":
            z_q = chosen + (flat - flat.detach())  # value of the winner; encoder: straight-through; winner: decoder grad
        else:
            z_q = flat + (chosen - flat).detach()
        usage, perplexity = usage_stats(win_codes, self.vocab_size)
        return QuantizerOutput(z_q.view(b, t, d).to(z.dtype), win_codes.view(b, t), loss, usage, perplexity,
                               masks=win_masks.view(b, t))
