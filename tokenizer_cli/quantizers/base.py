"""What every quantizer returns, and the small helpers they share."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Sampling at a temperature below this is greedy: it is 0 in float32, where the top logit would give 0/0.
GREEDY_BELOW = torch.finfo(torch.float32).tiny


@dataclass
class QuantizerOutput:
    z_q: torch.Tensor  # (B, T, D) straight-through quantized latents
    indices: torch.Tensor  # (B, T) int64 token ids
    loss: torch.Tensor  # scalar auxiliary loss (0 where none)
    usage: float  # fraction of the vocabulary used in this batch
    perplexity: float  # exp(entropy) of the token histogram in this batch
    masks: torch.Tensor | None = None  # (B, T) int64 winning mask of each token (MVQ with sampled masks only)


def usage_stats(indices: torch.Tensor, vocab_size: int) -> tuple[float, float]:
    """Fraction of ids used and perplexity of the id histogram."""
    counts = torch.bincount(indices.reshape(-1), minlength=vocab_size).float()
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    return (counts > 0).float().mean().item(), entropy.exp().item()


def nearest_codes(z: torch.Tensor, codes: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """(N, D) x (K, D) -> (N,) index of the nearest code vector of each row. ||z||^2 is the same for every code
    of a row, so argmin(||c||^2 - 2 z.c) decides, in one fused matmul per chunk of rows: no N x K matrix is
    held whole (at K = 2^14 and a batch of 500 49-token images it would be 1.6 GB)."""
    c2 = codes.pow(2).sum(1)
    if len(z) <= chunk:
        return torch.addmm(c2, z, codes.t(), alpha=-2).argmin(1)
    return torch.cat([torch.addmm(c2, z[i:i + chunk], codes.t(), alpha=-2).argmin(1)
                      for i in range(0, len(z), chunk)])


def squared_distances(z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """(N, D) x (K, D) -> (N, K) squared L2 distances."""
    return (z.pow(2).sum(1, keepdim=True) - 2 * z @ codes.t() + codes.pow(2).sum(1)[None, :]).clamp_min(0)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over data-parallel ranks, so every rank updates its codebook the same way."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    return t


def broadcast_from_rank0(t: torch.Tensor) -> torch.Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast(t, src=0)
    return t


def sample_rows(z: torch.Tensor, n: int) -> torch.Tensor:
    """n rows of z (N, D) drawn without replacement when possible, with a little noise otherwise."""
    if z.shape[0] >= n:
        return z[torch.randperm(z.shape[0], device=z.device)[:n]]
    picked = z[torch.randint(0, z.shape[0], (n,), device=z.device)]
    return picked + 0.01 * z.std() * torch.randn_like(picked)


def update_usage(usage: torch.Tensor, counts: torch.Tensor, decay: float = 0.99) -> None:
    """EMA of hits per code, in place."""
    usage.mul_(decay).add_(counts, alpha=1 - decay)


def dead_codes(usage: torch.Tensor, threshold: float) -> torch.Tensor:
    """True where a code's EMA hits fall below `threshold` times a fair share."""
    return usage < threshold * usage.sum() / usage.numel()
