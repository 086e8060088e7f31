"""`mvq encode`: images (files, folders, IDX files) -> tokens.npy + tokens.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from .. import data as data_io
from ..hub import load_pipeline
from ..tokenfile import make_manifest, manifest_path, save_tokens, smallest_dtype
from .common import DEFAULT_MODEL, BatchOpt, DeviceOpt, ModelOpt, OverwriteOpt, console, fail, pick_device, progress_bar

InputsArg = Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or IDX files, then OUT.npy.")]


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    for path in paths:
        if path.exists() and not overwrite:
            fail(f"{path} already exists (pass --overwrite to replace it)")


def encode(
    inputs: InputsArg,
    model: ModelOpt = DEFAULT_MODEL,
    batch_size: BatchOpt = 256,
    workers: Annotated[int, typer.Option("--workers", "-j", min=0, help="DataLoader worker processes for decoding images.")] = 0,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable inputs (listed in the manifest) instead of stopping.")] = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Turn images into tokens: writes OUT.npy (N x T ids) and OUT.json (model, sources, skipped inputs)."""
    import torch

    if len(inputs) < 2:
        fail("give at least one input and the output file: mvq encode IMAGES... OUT.npy")
    *sources_in, out_name = inputs
    out = Path(out_name)
    if out.suffix != ".npy":
        fail(f"the last argument is the output and must end in .npy, got {out_name!r}")
    refuse_existing([out, manifest_path(out)], overwrite)
    data_io.check_writable(out, manifest_path(out))
    dev = pick_device(device)
    pipe = load_pipeline(model, dev)
    cfg = pipe.tokenizer.cfg
    sources = list(data_io.iter_sources(sources_in))
    if not sources:
        fail(f"no images found in {', '.join(sources_in)}")

    tokens = np.zeros((len(sources), cfg.tokens), dtype=smallest_dtype(pipe.tokenizer.vocab_size))
    ok = np.zeros(len(sources), dtype=bool)
    skipped: list[dict] = []
    loader = torch.utils.data.DataLoader(
        data_io.SourceDataset(sources, cfg.image_size, cfg.channels), batch_size=batch_size,
        num_workers=workers, collate_fn=data_io.collate_sources, pin_memory=dev.type == "cuda")
    with progress_bar("encode", len(sources)) as bar:
        for indices, images, errors in loader:
            if errors and not skip_bad:
                fail(f"{errors[0][1]} (pass --skip-bad to skip unreadable inputs)")
            skipped += [{"source": sources[i].label(), "reason": msg} for i, msg in errors]
            if len(indices):
                ids = pipe.tokenizer.encode(images.to(dev, non_blocking=True))
                tokens[indices.numpy()] = ids.cpu().numpy()
                ok[indices.numpy()] = True
            bar.advance(len(indices) + len(errors), skipped=len(skipped))
    if not ok.any():
        fail(f"none of the {len(sources)} inputs could be read (first: {skipped[0]['reason']})")
    kept = [src.label() for src, good in zip(sources, ok) if good]
    manifest = make_manifest(pipe.source, pipe.config_hash, cfg.tokens, pipe.tokenizer.vocab_size, kept, skipped)
    save_tokens(out, tokens[ok], manifest, overwrite)
    note = f", skipped {len(skipped)} (listed in {manifest_path(out)})" if skipped else ""
    console.print(f"wrote {out}: {int(ok.sum())} images x {cfg.tokens} tokens{note}")
