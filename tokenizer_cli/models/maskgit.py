"""MaskGIT prior (Chang et al. 2022, arXiv 2202.04200): a bidirectional Transformer that fills masked tokens.

The same blocks, width and depth as the autoregressive prior (prior.py), without the causal mask. The input
is the T tokens with some replaced by the [MASK] id (vocab_size), at learned positions; with classes, a class
token goes first, whose id num_classes means "no class" (classifier-free guidance). Training masks a share of
each sequence drawn from the cosine schedule, at least `min_mask_ratio` (the FSQ paper's fix, arXiv 2309.15505,
A.4.2), and scores the masked positions only, with label smoothing. Sampling is `parallel_decode.decode` over
this model's logits (`generate`): the model itself knows nothing of it.

For MVQ with sampled masks each position also has a mask, fed in beside its code (id num_masks where unknown)
and predicted, at a masked position, from the final hidden state and the position's (drawn) code.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MASKGIT_CHOICE_TEMPERATURE, MASKGIT_STEPS, MaskGITConfig
from .parallel_decode import decode
from .prior import Block, init_weights, mask_head
from .sampling import check_labels, check_sampling, draw, finite_non_negative, new_generator


def masked_loss(out, tokens: torch.Tensor, hidden: torch.Tensor, masks: torch.Tensor | None = None,
                label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy (float32, label smoothing) of the model's output on the hidden positions (B, T) only: of
    the codes, plus of the masks where the prior predicts them (out = (logits, mask logits))."""
    if masks is None:
        return selected_loss(out[hidden], tokens[hidden], label_smoothing=label_smoothing)
    logits, mask_logits = out
    return selected_loss((logits[hidden], mask_logits[hidden]), tokens[hidden], masks[hidden], label_smoothing)


def selected_loss(out, tokens: torch.Tensor, masks: torch.Tensor | None = None,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """masked_loss of outputs already taken at the hidden positions only: logits (N, vocab) of tokens (N,), or
    (logits, mask logits (N, M)) of tokens and masks (N,)."""
    if masks is None:
        return F.cross_entropy(out.float(), tokens, label_smoothing=label_smoothing)
    logits, mask_logits = out
    return (F.cross_entropy(logits.float(), tokens, label_smoothing=label_smoothing)
            + F.cross_entropy(mask_logits.float(), masks, label_smoothing=label_smoothing))


class MaskGITPrior(nn.Module):
    def __init__(self, cfg: MaskGITConfig):
        super().__init__()
        self.cfg = cfg
        self.mask_id = cfg.vocab_size  # [MASK]: one id past the vocabulary; never predicted
        self.no_class = cfg.num_classes  # the class id of "no class"
        self.wte = nn.Embedding(cfg.vocab_size + 1, cfg.n_embd)
        self.wce = nn.Embedding(cfg.num_classes + 1, cfg.n_embd) if cfg.num_classes > 0 else None
        self.wpe = nn.Embedding(cfg.tokens, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, causal=False) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size)
        self.wme = nn.Embedding(cfg.num_masks + 1, cfg.n_embd) if cfg.num_masks else None  # id num_masks: unknown
        self.mask_code = nn.Embedding(cfg.vocab_size, cfg.n_embd) if cfg.num_masks else None
        self.mask_head = mask_head(cfg) if cfg.num_masks else None
        init_weights(self, cfg.n_layer)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _run(self, ids: torch.Tensor, labels: torch.Tensor | None, mask_ids: torch.Tensor | None,
             at: torch.Tensor | None = None):
        """ids (B, T), labels (B,) or None, mask ids (B, T) or None -> (logits (B, T, vocab), hidden (B, T, C)); with
        `at` (B, T) bool, only at those positions: (logits (N, vocab), hidden (N, C)), N = at.sum()."""
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))  # (B, T, C)
        if self.wme is not None:
            x = x + self.wme(mask_ids)
        if self.wce is not None:
            x = torch.cat([self.wce(labels)[:, None], x], dim=1)  # (B, 1+T, C): the class token first
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        if self.wce is not None:
            x = x[:, 1:]  # (B, T, C)
        h = self.ln_f(x if at is None else x[at])  # the vocabulary head is most of the work at large vocabularies
        return self.head(h), h

    def mask_logits(self, h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Mask logits (B, T, M) of codes (B, T) at positions whose final hidden states are h (B, T, C)."""
        return self.mask_head(h + self.mask_code(codes))

    def forward(self, ids: torch.Tensor, labels: torch.Tensor | None = None, mask_ids: torch.Tensor | None = None,
                codes: torch.Tensor | None = None, at: torch.Tensor | None = None):
        """ids (B, T) with the [MASK] id at unknown positions -> logits (B, T, vocab) at every position.

        labels (B,) in [0, num_classes], num_classes meaning "no class", for a class-conditional prior. A prior
        with a mask head takes the masks beside the ids (B, T; num_masks where unknown) and the codes (B, T)
        whose masks to score, and returns (logits, mask logits (B, T, M)). With `at` (B, T) bool, the outputs are
        only those at the positions it marks, rows (N, ...) in row-major order (training scores the masked ones)."""
        if ids.dim() != 2 or ids.shape[1] != self.cfg.tokens:
            raise ValueError(f"ids must have shape (B, {self.cfg.tokens}), got {tuple(ids.shape)}")
        if (mask_ids is None or codes is None) != (self.mask_head is None):
            raise ValueError("mask ids and codes go with a prior that has a mask head (num_masks > 0), and only "
                             "with one")
        if (labels is None) != (self.wce is None):
            raise ValueError("labels go with a class-conditional prior (num_classes > 0), and only with one")
        logits, h = self._run(ids, labels, mask_ids, at)
        if self.mask_head is None:
            return logits
        return logits, self.mask_logits(h, codes if at is None else codes[at])

    def training_batch(self, tokens: torch.Tensor, labels: torch.Tensor | None = None,
                       masks: torch.Tensor | None = None, generator: torch.Generator | None = None):
        """What one training step feeds in for sequences tokens (B, T): (ids with [MASK] at the hidden positions,
        labels with `class_dropout` of them "no class", mask ids with num_masks at the hidden positions, hidden
        (B, T) bool). Each sequence hides ceil(r T) positions, r = max(cos(pi/2 u), min_mask_ratio), u ~ U[0, 1)."""
        B, T = tokens.shape
        dev = tokens.device
        ratio = torch.cos(math.pi / 2 * torch.rand(B, generator=generator, device=dev)).clamp_min(self.cfg.min_mask_ratio)
        count = torch.ceil(ratio * T).long().clamp(1, T)  # (B,)
        rank = torch.rand(B, T, generator=generator, device=dev).argsort(dim=-1).argsort(dim=-1)  # a random order
        hidden = rank < count[:, None]  # (B, T)
        ids = tokens.masked_fill(hidden, self.mask_id)
        mask_ids = masks.masked_fill(hidden, self.cfg.num_masks) if masks is not None else None
        if labels is not None:
            dropped = torch.rand(B, generator=generator, device=dev) < self.cfg.class_dropout
            labels = labels.masked_fill(dropped, self.no_class)
        return ids, labels, mask_ids, hidden

    def loss(self, tokens: torch.Tensor, labels: torch.Tensor | None = None, masks: torch.Tensor | None = None,
             net: nn.Module | None = None) -> torch.Tensor:
        """The training loss of one batch of sequences tokens (B, T) (and their masks (B, T)); `net` is the module
        to run (this one, or a DistributedDataParallel wrapper of it, so gradients are averaged over ranks)."""
        ids, labels, mask_ids, hidden = self.training_batch(tokens, labels, masks)
        out = (net or self)(ids, labels, mask_ids, tokens if masks is not None else None, at=hidden)
        return selected_loss(out, tokens[hidden], masks[hidden] if masks is not None else None,
                             self.cfg.label_smoothing)

    @torch.inference_mode()
    def _sample_chunk(self, b: int, labels: torch.Tensor | None, g: torch.Generator, steps: int,
                      guidance_scale: float, mask_temperature: float, **sampling):
        """b sequences decoded in `steps` passes -> ids (b, T) and, with a mask head, masks (b, T)."""
        dev = self.wte.weight.device
        on_cuda = dev.type == "cuda"
        ids = torch.full((b, self.cfg.tokens), self.mask_id, dtype=torch.long, device=dev)
        mask_ids = torch.full_like(ids, self.cfg.num_masks) if self.mask_head is not None else None
        guided = labels is not None and guidance_scale > 0
        if guided:  # one pass over the conditional and the unconditional batch
            labels = torch.cat([labels, torch.full_like(labels, self.no_class)])
        hidden = {}  # the final hidden states (n, C) at the positions of the last logits_fn call, and those positions

        def logits_fn(current: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
            hidden["at"] = at
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda):
                if not guided:
                    logits, hidden["h"] = self._run(current, labels, mask_ids, at)
                    return logits
                both, h = self._run(current.repeat(2, 1), labels,
                                    None if mask_ids is None else mask_ids.repeat(2, 1), at.repeat(2, 1))
            cond, uncond = both.float().chunk(2)  # (n, vocab) each: the rows of the first b sequences come first
            hidden["h"] = h[: len(cond)]
            return cond + guidance_scale * (cond - uncond)

        def draw_masks(sampled: torch.Tensor, fixed: torch.Tensor) -> None:
            chosen = fixed[hidden["at"]]  # (n,): of the positions the logits were taken at, those fixed now
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda):
                logits = self.mask_logits(hidden["h"][chosen], sampled[fixed]).float()  # (m, M)
            mask_ids[fixed] = draw(logits, mask_temperature, None, None, g)[:, 0]

        ids = decode(logits_fn, ids, self.mask_id, steps, g, on_fix=draw_masks if mask_ids is not None else None,
                     **sampling)
        return ids, mask_ids

    def generate(
        self,
        n: int,
        steps: int | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        choice_temperature: float = MASKGIT_CHOICE_TEMPERATURE,
        seed: int | None = None,
        labels=None,
        guidance_scale: float = 0.0,
        batch_size: int | None = None,
        mask_temperature: float = 1.0,
        return_masks: bool = False,
        on_batch: Callable[[int], None] | None = None,
    ):
        """Sample n token sequences -> LongTensor (n, T) by parallel decoding in `steps` passes (default
        min(8, T); 1 to T). The same seed gives the same samples.

        temperature, top_k and top_p shape each draw (temperature 0, or below float32's smallest normal:
        argmax); choice_temperature scales the Gumbel noise on the confidence that picks which draws are kept
        (0: the most confident). labels (int or (n,) ints) are required iff num_classes > 0; guidance_scale > 0
        adds classifier-free guidance,
        logits = cond + scale * (cond - uncond). A prior with a mask head draws the mask of each position as its
        code is fixed (mask_temperature, 0 = argmax); return_masks gives (ids, masks), masks None without one.
        on_batch(k) is called as each batch of k sequences is done.
        """
        check_sampling(n, temperature, top_k, top_p, batch_size, mask_temperature)
        T = self.cfg.tokens
        steps = min(MASKGIT_STEPS, T) if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= T:
            raise ValueError(f"steps must be an integer from 1 to {T} (the tokens per image), got {steps!r}")
        if not finite_non_negative(choice_temperature):
            raise ValueError(f"choice_temperature must be a finite number >= 0, got {choice_temperature!r}")
        if not finite_non_negative(guidance_scale):
            raise ValueError(f"guidance_scale must be a finite number >= 0, got {guidance_scale!r}")
        if guidance_scale and self.wce is None:
            raise ValueError("guidance_scale needs a class-conditional prior (num_classes > 0)")
        labels = check_labels(labels, self.cfg.num_classes, int(n), self.wte.weight.device)
        g = new_generator(seed, self.wte.weight.device)
        sampling = dict(temperature=float(temperature), top_k=None if top_k is None else int(top_k), top_p=top_p,
                        choice_temperature=float(choice_temperature))
        n, chunk = int(n), int(batch_size or n)
        was_training = self.training
        self.eval()
        try:
            chunks = []
            for lo in range(0, n, chunk):
                chunks.append(self._sample_chunk(min(chunk, n - lo), None if labels is None else labels[lo : lo + chunk],
                                                 g, int(steps), float(guidance_scale), float(mask_temperature),
                                                 **sampling))
                if on_batch is not None:
                    on_batch(len(chunks[-1][0]))
        finally:
            self.train(was_training)
        ids = torch.cat([c[0] for c in chunks]).clone()  # (n, T); cloned outside inference mode
        if not return_masks:
            return ids
        return ids, None if self.mask_head is None else torch.cat([c[1] for c in chunks]).clone()
