"""Batched encode, decode and sample loops over a tokenizer and a prior: library functions, no files, no printing.

Each yields or returns numpy arrays batch by batch, so the commands above them (and the Python API) hold
at most one batch of images in memory whatever the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from .images import DEFAULT_FIT, PictureTally, to_uint8


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
                  mask_temperature: float = 1.0, mask_sampling: str = "prior", batch_size: int = 1024,
                  graph: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """n token rows (n, T) from the prior and, for MVQ with sampled masks, their drawn masks (n, T).

    The prior samples `batch_size` sequences at a time (KV cache); the same seed gives the same rows. Masks
    come from the prior's mask head ("prior", where it has one), the tokenizer's p(m | k) ("learned") or
    are uniform; "prior" falls back to "learned" for a prior without a mask head."""
    ids, masks = prior.generate(n, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, labels=label,
                                batch_size=min(n, batch_size), mask_temperature=mask_temperature, return_masks=True,
                                graph=graph)
    if masks is not None and mask_sampling == "prior":
        return ids.cpu().numpy(), masks.cpu().numpy()
    masks = None
    if tokenizer.num_masks:
        g = mask_generator(seed, ids.device)
        how = "learned" if mask_sampling == "prior" else mask_sampling
        masks = tokenizer.quantizer.sample_masks(ids, g, mask_temperature, how).cpu().numpy()
    return ids.cpu().numpy(), masks


@torch.inference_mode()
def encode_images(tokenizer, images: np.ndarray, batch_size: int = 500, device: torch.device | str = "cpu",
                  on_batch: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Token ids (N, T) int64 of uint8 images (N, H, W[, C]), and their masks (N, T) where the model has masks."""
    from .images import to_float

    dev = torch.device(device)
    tokenizer.to(dev).eval()
    ids = np.empty((len(images), tokenizer.tokens_per_image), dtype=np.int64)
    masks = np.empty_like(ids) if tokenizer.num_masks else None
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size]).to(dev)
        batch_ids, batch_masks = tokenizer.encode(x, with_masks=True)
        ids[start : start + len(x)] = batch_ids.cpu().numpy()
        if masks is not None:
            masks[start : start + len(x)] = batch_masks.cpu().numpy()
        if on_batch is not None:
            on_batch(len(x))
    return ids, masks


@dataclass
class EncodedSources:
    ids: np.ndarray  # (N, T) token ids of the inputs that could be read, in input order
    masks: np.ndarray | None  # (N, T) their masks (MVQ with sampled masks)
    sources: list[str]  # the label of each row's input
    skipped: list[dict]  # {"source", "reason"} of each unreadable input
    pictures: PictureTally  # what the inputs read were (colour, sizes), for fitting.mismatch_notice


@torch.inference_mode()
def encode_sources(tokenizer, sources: list, batch_size: int = 256, workers: int = 0, skip_bad: bool = False,
                   device: torch.device | str = "cpu", on_batch: Callable[..., None] | None = None,
                   fit: str = DEFAULT_FIT) -> EncodedSources:
    """Encode image files and IDX rows (data.iter_sources) in batches, decoded by `workers` processes, each
    picture fitted to the model's square by `fit` (images.fit_square).

    An unreadable input raises InputError, or with skip_bad is listed in `skipped` and left out."""
    from .data import InputError, SourceDataset, collate_sources
    from .tokenfile import smallest_dtype

    dev = torch.device(device)
    cfg = tokenizer.cfg
    ids = np.zeros((len(sources), cfg.tokens), dtype=smallest_dtype(tokenizer.vocab_size))
    masks = np.zeros((len(sources), cfg.tokens), dtype=smallest_dtype(tokenizer.num_masks)) \
        if tokenizer.num_masks else None
    ok = np.zeros(len(sources), dtype=bool)
    skipped: list[dict] = []
    pictures = PictureTally(cfg.image_size, fit)
    loader = torch.utils.data.DataLoader(
        SourceDataset(sources, cfg.image_size, cfg.channels, fit), batch_size=batch_size, num_workers=workers,
        collate_fn=collate_sources, pin_memory=dev.type == "cuda")
    for indices, images, errors, infos in loader:
        for info in infos:
            pictures.add(info)
        if errors and not skip_bad:
            raise InputError(f"{errors[0][1]} (pass --skip-bad to skip unreadable inputs)")
        skipped += [{"source": sources[i].label(), "reason": msg} for i, msg in errors]
        if len(indices):
            batch_ids, batch_masks = tokenizer.encode(images.to(dev, non_blocking=True), with_masks=True)
            ids[indices.numpy()] = batch_ids.cpu().numpy()
            ok[indices.numpy()] = True
            if masks is not None:
                masks[indices.numpy()] = batch_masks.cpu().numpy()
        if on_batch is not None:
            on_batch(len(indices) + len(errors), skipped=len(skipped))
    if not ok.any():
        raise InputError(f"none of the {len(sources)} inputs could be read (first: {skipped[0]['reason']})")
    return EncodedSources(ids[ok], None if masks is None else masks[ok],
                          [src.label() for src, good in zip(sources, ok) if good], skipped, pictures)
