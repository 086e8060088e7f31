"""MaskGIT's iterative parallel decoding (Chang et al. 2022, arXiv 2202.04200) as one pure function.

As in google-research/maskgit (`libml/parallel_decode.py`, `libml/mask_schedule.py`), decoding takes the model
as a logits function over whole sequences and knows nothing else of it; the model knows nothing of decoding.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .sampling import categorical, is_greedy, sampling_probs

LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # ids (B, T), at (B, T) bool -> logits (n, vocab) there
FixCallback = Callable[[torch.Tensor, torch.Tensor], None]  # (sampled ids (B, T), fixed now (B, T) bool)


def masked_after(unknown: torch.Tensor, step: int, steps: int) -> torch.Tensor:
    """The cosine schedule: of `unknown` (B,) positions masked at the start, floor(N cos(pi/2 (step+1)/steps))
    are still masked after step `step` (0-based) of `steps`; none after the last."""
    return torch.floor(unknown * math.cos(math.pi / 2 * (step + 1) / steps)).long()


def _gumbel(shape: tuple[int, ...], g: torch.Generator, device: torch.device) -> torch.Tensor:
    u = torch.rand(shape, generator=g, device=device).clamp_min(torch.finfo(torch.float32).tiny)
    return -torch.log(-torch.log(u))


def decode(logits_fn: LogitsFn, ids: torch.Tensor, unknown_id: int, steps: int, generator: torch.Generator,
           temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           choice_temperature: float = 4.5, on_fix: FixCallback | None = None) -> torch.Tensor:
    """Fill the positions of ids (B, T) that hold `unknown_id` in `steps` passes of logits_fn -> ids (B, T).
    logits_fn(ids, at) gives the logits (n, vocab) at the n positions `at` (B, T) marks, in row-major order: the
    positions still masked (a model need not compute its vocabulary head anywhere else).

    At step s (0-based) every still-masked position draws a token (temperature, top-k, top-p; a temperature of 0,
    or below float32's smallest normal, is argmax); its confidence is log p of the drawn token plus
    choice_temperature * (1 - (s+1)/steps) Gumbel noise (as google-research/maskgit and 1d-tokenizer anneal it,
    by the same ratio as the schedule: none at the last step);
    the `masked_after(N, s, steps)` least confident stay masked (at least one fewer than before, none after the
    last step) and the others are fixed for good. on_fix(sampled, fixed) sees each step's draws and the
    positions it fixes (a mask head draws their masks there). Steps after every position is fixed do nothing.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    unknown = ids == unknown_id  # (B, T)
    start = unknown.sum(dim=-1)  # (B,) N: masked at the start
    for step in range(steps):
        left = unknown.sum(dim=-1)  # (B,)
        if not bool(left.any()):
            break
        B, T = ids.shape
        masked_logits = logits_fn(ids, unknown).float()  # (n, vocab): only the positions still masked, row by row
        if is_greedy(temperature):
            drawn = masked_logits.argmax(dim=-1)
            logp = F.log_softmax(masked_logits, dim=-1).gather(-1, drawn[:, None])[:, 0]
        else:
            probs = sampling_probs(masked_logits, temperature, top_k, top_p)  # (n, vocab)
            drawn = categorical(probs, generator)  # (n,)
            logp = probs.gather(-1, drawn[:, None])[:, 0].log()
        sampled = ids.masked_scatter(unknown, drawn)  # (B, T): the draws where masked, fixed tokens elsewhere
        confidence = torch.zeros(B, T, device=ids.device).masked_scatter(unknown, logp)
        noise = choice_temperature * (1 - (step + 1) / steps)  # the schedule's ratio, as maskgit's
        if noise > 0:
            confidence = confidence + noise * _gumbel((B, T), generator, ids.device)
        confidence = confidence.masked_fill(~unknown, math.inf)  # fixed tokens are never masked again
        keep = torch.minimum(masked_after(start, step, steps), left - 1).clamp_min(0)  # (B,)
        rank = confidence.argsort(dim=-1, stable=True).argsort(dim=-1)  # (B, T) 0 = least confident
        still = rank < keep[:, None]  # only unknown positions: keep < left and known ones rank last
        fixed = unknown & ~still
        if on_fix is not None:
            on_fix(sampled, fixed)
        ids = torch.where(fixed, sampled, ids)
        unknown = still
    return ids
