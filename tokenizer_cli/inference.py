"""Batched encode, decode and sample loops over a tokenizer and a prior: library functions, no files, no printing.

Each yields or returns numpy arrays batch by batch, so the commands above them (and the Python API) hold
at most one batch of images in memory whatever the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .config import MASKGIT_CHOICE_TEMPERATURE, MASKGIT_STEPS, MaskGITConfig
from .data import BadArgument, InputError, SourceDataset, collate_sources
from .images import DEFAULT_FIT, PictureInfo, PictureTally, to_float, to_uint8
from .tokenfile import smallest_dtype


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


def sampler_kind(prior) -> str | None:
    """"ar" or "maskgit": the kind of a prior (None for none)."""
    if prior is None:
        return None
    return "maskgit" if isinstance(prior.cfg, MaskGITConfig) else "ar"


def sampler_label(prior, options: dict) -> str:
    """What sampled, in words: "AR prior" or "MaskGIT prior, S steps" (S as the sampler will use it), with the
    choice temperature where it is not the default."""
    if sampler_kind(prior) == "ar":
        return "AR prior"
    steps = options.get("steps") or min(MASKGIT_STEPS, prior.cfg.tokens)
    choice = options.get("choice_temperature")
    extra = "" if choice is None or choice == MASKGIT_CHOICE_TEMPERATURE else f", choice temperature {choice:g}"
    return f"MaskGIT prior, {steps} step{'s' if steps > 1 else ''}{extra}"


def sampler_options(prior, steps: int | None = None, choice_temperature: float | None = None,
                    guidance_scale: float = 0.0, graph: bool = False) -> dict:
    """Of the sampling options given, those of this prior's sampler, for `sample_tokens`: the MaskGIT prior's
    (steps, from 1 to T; choice_temperature; guidance_scale) or the AR prior's (graph). Another sampler's option,
    or steps out of range, is one line (BadArgument)."""
    if not isinstance(prior.cfg, MaskGITConfig):
        given = [name for name, value in (("steps", steps), ("choice_temperature", choice_temperature))
                 if value is not None] + (["guidance_scale"] if guidance_scale else [])  # 0 is given too, but off
        if given:
            raise BadArgument(given[0], "is an option of the MaskGIT sampler, but the sampler is the AR prior "
                                        "(choose the sampler maskgit)")
        return {"graph": graph}
    if graph:
        raise BadArgument("graph", "compiles the AR prior's steps; the MaskGIT sampler has none")
    T = prior.cfg.tokens
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T):
        raise BadArgument("steps", f"must be a whole number from 1 to {T} (the model's tokens per image), got {steps!r}")
    options = {"steps": steps, "guidance_scale": guidance_scale}
    if choice_temperature is not None:
        options["choice_temperature"] = choice_temperature
    return options


@torch.inference_mode()
def sample_tokens(prior, tokenizer, n: int, seed: int | None = 0, label: int | None = None,
                  mask_temperature: float = 1.0, mask_sampling: str = "prior", batch_size: int = 1024,
                  **sampling) -> tuple[np.ndarray, np.ndarray | None]:
    """n token rows (n, T) from a prior (AR or MaskGIT) and, for MVQ with sampled masks, their drawn masks (n, T).

    The prior samples `batch_size` sequences at a time with its own `sampling` options (temperature, top_k,
    top_p; AR: graph; MaskGIT: steps, choice_temperature, guidance_scale); the same seed gives the same rows.
    Masks come from the prior's mask head ("prior", where it has one), the tokenizer's p(m | k) ("learned") or
    are uniform; "prior" falls back to "learned" for a prior without a mask head."""
    ids, masks = prior.generate(n, seed=seed, labels=label, batch_size=min(n, batch_size),
                                mask_temperature=mask_temperature, return_masks=True, **sampling)
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
class EncodedBatch:
    start: int  # index of its first input
    ok: np.ndarray  # (n,) bool: which of the inputs [start, start + n) could be read
    ids: np.ndarray  # (ok.sum(), T) their token ids, smallest dtype
    masks: np.ndarray | None  # (ok.sum(), T) their masks (MVQ with sampled masks)
    skipped: list[dict]  # {"source", "reason"} of each unreadable input of the batch
    pictures: list[PictureInfo]  # what each input read was (colour, size), for the tally of a whole run


@dataclass
class EncodedSources:
    ids: np.ndarray  # (N, T) token ids of the inputs that could be read, in input order
    masks: np.ndarray | None  # (N, T) their masks (MVQ with sampled masks)
    sources: list[str]  # the label of each row's input
    skipped: list[dict]  # {"source", "reason"} of each unreadable input
    pictures: PictureTally  # what the inputs read were (colour, sizes), for fitting.mismatch_notice


@torch.inference_mode()
def iter_encoded(tokenizer, sources: list, batch_size: int = 256, workers: int = 0, skip_bad: bool = False,
                 device: torch.device | str = "cpu", start: int = 0, fit: str = DEFAULT_FIT
                 ) -> Iterator[EncodedBatch]:
    """Encode image files and IDX rows (data.iter_sources) from sources[start] on, batch by batch (batches
    start at start + k * batch_size), decoded by `workers` processes, each picture fitted to the model's square
    by `fit` (images.fit_square).

    An unreadable input raises InputError, or with skip_bad is listed in the batch's `skipped`."""
    dev = torch.device(device)
    cfg = tokenizer.cfg
    id_type, mask_type = smallest_dtype(tokenizer.vocab_size), smallest_dtype(max(tokenizer.num_masks, 1))
    loader = torch.utils.data.DataLoader(
        SourceDataset(sources[start:], cfg.image_size, cfg.channels, fit), batch_size=batch_size,
        num_workers=workers, collate_fn=collate_sources, pin_memory=dev.type == "cuda")
    for first, (indices, images, errors, infos) in zip(range(start, len(sources), batch_size), loader):
        if errors and not skip_bad:
            raise InputError(f"{errors[0][1]} (pass --skip-bad to skip unreadable inputs)")
        ok = np.ones(len(indices) + len(errors), dtype=bool)
        ok[[start + i - first for i, _ in errors]] = False  # the loader's indices count from sources[start]
        ids = np.zeros((len(indices), cfg.tokens), dtype=id_type)
        masks = np.zeros_like(ids, dtype=mask_type) if tokenizer.num_masks else None
        if len(indices):
            batch_ids, batch_masks = tokenizer.encode(images.to(dev, non_blocking=True), with_masks=True)
            ids[:] = batch_ids.cpu().numpy()
            if masks is not None:
                masks[:] = batch_masks.cpu().numpy()
        skipped = [{"source": sources[start + i].label(), "reason": msg} for i, msg in errors]
        yield EncodedBatch(first, ok, ids, masks, skipped, infos)


def gather_encoded(batches: Iterable[EncodedBatch], sources: list, pictures: PictureTally) -> EncodedSources:
    """The rows of consecutive batches covering all `sources`, as one result, their pictures added to the
    `pictures` tally (kept batches of a resumed run count as well); InputError if none was readable."""
    parts = list(batches)
    ok = np.concatenate([b.ok for b in parts]) if parts else np.zeros(0, dtype=bool)
    if len(ok) != len(sources):
        raise ValueError(f"the batches cover {len(ok)} inputs, not {len(sources)}")
    skipped = [s for b in parts for s in b.skipped]
    for info in (info for b in parts for info in b.pictures):
        pictures.add(info)
    if not ok.any():
        raise InputError(f"none of the {len(sources)} inputs could be read (first: {skipped[0]['reason']})")
    masks = np.concatenate([b.masks for b in parts]) if parts[0].masks is not None else None
    return EncodedSources(np.concatenate([b.ids for b in parts]), masks,
                          [src.label() for src, good in zip(sources, ok) if good], skipped, pictures)
