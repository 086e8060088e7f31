"""Batched encode, decode and sample loops over a tokenizer and a prior: library functions, no files, no printing.

Each yields or returns numpy arrays batch by batch, so the commands above them (and the Python API) hold
at most one batch of images in memory whatever the number of images.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch

from .data import to_uint8


def mask_generator(seed: int | None, device: torch.device | str) -> torch.Generator:
    """The generator that draws MVQ masks: seeded (reproducible) or fresh."""
    g = torch.Generator(device=torch.device(device))
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


@torch.inference_mode()
def decode_tokens(tokenizer, ids: np.ndarray, masks: np.ndarray | None = None, batch_size: int = 256,
                  device: torch.device | str = "cpu", seed: int | None = 0, mask_temperature: float = 1.0,
                  mask_sampling: str = "learned", on_batch: Callable[[int], None] | None = None
                  ) -> Iterator[np.ndarray]:
    """uint8 images (b, H, W[, C]) for validated token rows (N, T), batch by batch.

    MVQ with sampled masks decodes with `masks` (N, T) when given (exact) and draws them otherwise,
    from one generator seeded by `seed`, so the same tokens and seed give the same images."""
    dev = torch.device(device)
    g = mask_generator(seed, dev) if tokenizer.num_masks else None
    for start in range(0, len(ids), batch_size):
        chunk = torch.as_tensor(np.asarray(ids[start : start + batch_size], dtype=np.int64), device=dev)
        chunk_masks = None
        if masks is not None and tokenizer.num_masks:
            chunk_masks = torch.as_tensor(np.asarray(masks[start : start + batch_size], dtype=np.int64), device=dev)
        images = tokenizer.decode(chunk, chunk_masks, generator=g, mask_temperature=mask_temperature,
                                  mask_sampling=mask_sampling)
        if on_batch is not None:
            on_batch(len(chunk))
        yield to_uint8(images.float().cpu())


@torch.inference_mode()
def sample_tokens(prior, tokenizer, n: int, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, seed: int | None = 0, label: int | None = None,
                  mask_temperature: float = 1.0, mask_sampling: str = "learned", batch_size: int = 1024
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """n token rows (n, T) from the prior and, for MVQ with sampled masks, their drawn masks (n, T).

    The prior samples `batch_size` sequences at a time (KV cache); the same seed gives the same rows."""
    ids = prior.generate(n, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, labels=label,
                         batch_size=min(n, batch_size))
    masks = None
    if tokenizer.num_masks:
        g = mask_generator(seed, ids.device)
        masks = tokenizer.quantizer.sample_masks(ids, g, mask_temperature, mask_sampling).cpu().numpy()
    return ids.cpu().numpy(), masks
