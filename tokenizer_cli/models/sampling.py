"""What both priors' samplers share: checking the options, the seeded generator, drawing ids from logits."""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from ..quantizers.base import GREEDY_BELOW


def positive_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= 1


def finite_non_negative(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def check_sampling(n, temperature, top_k, top_p, batch_size, mask_temperature) -> None:
    """The options every prior's `generate` takes, as ValueErrors naming the option."""
    if not positive_int(n):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not finite_non_negative(temperature):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and not positive_int(top_k):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, numbers.Real) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
    if batch_size is not None and not positive_int(batch_size):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if not finite_non_negative(mask_temperature):
        raise ValueError(f"mask_temperature must be a finite number >= 0, got {mask_temperature!r}")


def check_labels(labels, num_classes: int, batch: int, device: torch.device) -> torch.Tensor | None:
    """Class labels as a LongTensor (batch,) in [0, num_classes), or None for an unconditional prior."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError("this prior is unconditional (num_classes=0): do not pass labels")
        return None
    if labels is None:
        raise ValueError(f"this prior is class-conditional ({num_classes} classes): labels are required")
    labels = torch.as_tensor(labels, device=device)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    labels = labels.long().expand(batch) if labels.dim() == 0 else labels.long()
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        lo, hi = labels.min().item(), labels.max().item()
        raise ValueError(f"labels must lie in [0, {num_classes}), got values from {lo} to {hi}")
    return labels


def new_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator of its own, seeded (the same seed gives the same samples) or fresh; the global RNG is left alone."""
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


def sampling_probs(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """logits (B, vocab) float32 -> the probabilities ids are drawn from (temperature not greedy, top-k, then top-p)."""
    if temperature != 1.0:  # (softmax shifts by the maximum itself)
        logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature  # shifted: a tiny T cannot overflow
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)  # (B, vocab)
    if top_p is not None and top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(dim=-1) - sorted_p >= top_p  # mass before it already reaches p; never the first
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    return probs


def is_greedy(temperature: float) -> bool:
    """Temperature 0, or one so small it is 0 in float32 (the top logit would give 0/0): take the argmax."""
    return temperature < GREEDY_BELOW


def categorical(probs: torch.Tensor, g: torch.Generator, block: int = 128) -> torch.Tensor:
    """One id drawn from each row of probs (B, vocab) (non-negative, not all zero) -> (B,), with one uniform number
    a row: by the inverse of the cumulative distribution (float64), first over blocks of `block` ids, then within
    the block drawn. torch.multinomial on a CPU draws an exponential number for every entry of a row: at a
    vocabulary of 15,360 that was half of MaskGIT's sampling time (a plain cumsum over the row is no faster)."""
    B, V = probs.shape
    pad = (-V) % block
    blocks = (F.pad(probs, (0, pad)) if pad else probs).reshape(B, (V + pad) // block, block)  # (B, nb, block)
    mass = blocks.sum(dim=-1).double()  # (B, nb); float32 within a block, float64 across
    cdf = mass.cumsum(dim=-1)
    total = cdf[:, -1]
    if not bool((torch.isfinite(total) & (total > 0)).all()):  # as torch.multinomial refuses them
        raise ValueError("probabilities to draw from must be finite, non-negative and not all zero (a NaN or inf "
                         "logit: did the prior diverge?)")
    u = torch.rand(B, 1, generator=g, device=probs.device, dtype=torch.float64) * cdf[:, -1:]  # (B, 1)
    # the first block (then id) whose cdf exceeds u, which has p > 0; the last such, should rounding reach the total
    b = torch.minimum(torch.searchsorted(cdf, u, right=True), (mass > 0).cumsum(dim=-1).argmax(dim=-1, keepdim=True))
    rest = (u - (cdf.gather(-1, b) - mass.gather(-1, b))).clamp_min(0)  # (B, 1): how far into block b
    inside = blocks[torch.arange(B, device=probs.device), b[:, 0]].double()  # (B, block)
    j = torch.minimum(torch.searchsorted(inside.cumsum(dim=-1), rest, right=True),
                      (inside > 0).cumsum(dim=-1).argmax(dim=-1, keepdim=True))
    return (b * block + j)[:, 0]


def draw(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
         g: torch.Generator) -> torch.Tensor:
    """logits (B, vocab) float32 -> ids (B, 1); a greedy temperature is argmax and consumes no random numbers."""
    if is_greedy(temperature):
        return logits.argmax(dim=-1, keepdim=True)
    return categorical(sampling_probs(logits, temperature, top_k, top_p), g)[:, None]  # (B, 1)
