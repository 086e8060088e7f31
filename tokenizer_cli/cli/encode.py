"""`mvq encode`: images (files, folders, IDX files) -> tokens.npy + tokens.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import data as data_io
from .. import files
from ..fitting import mismatch_notice
from ..images import DEFAULT_FIT, PictureTally
from ..pipeline import load_pipeline
from ..tokenfile import make_manifest, manifest_path, masks_path, save_tokens
from .common import (DEFAULT_MODEL, BatchOpt, DeviceOpt, FitOpt, ModelOpt, OverwriteOpt, console, fail,
                     on_interrupt, pick_device, progress_bar, warn)

InputsArg = Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or IDX files, then OUT.npy.")]


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    for path in paths:
        if path.exists() and not overwrite:
            fail(f"{path} already exists (pass --overwrite to replace it)")


def encode(
    inputs: InputsArg,
    model: ModelOpt = DEFAULT_MODEL,
    batch_size: BatchOpt = 256,
    workers: Annotated[int, typer.Option("--workers", "-j", min=0, max=64, help="DataLoader worker processes for decoding images.")] = 0,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable inputs (listed in the manifest) instead of stopping.")] = False,
    fit: FitOpt = DEFAULT_FIT,
    overwrite: OverwriteOpt = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run of the same command (same inputs and options) where it stopped.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Turn images into tokens: writes OUT.npy (N x T ids) and OUT.json (model, sources, skipped inputs).

    MVQ with sampled masks also writes OUT.masks.npy (N x T, the winning mask of every token), so that
    `mvq decode` reconstructs the images exactly. Finished batches are kept in a hidden folder beside OUT
    until the outputs are written, so that an interrupted run can be continued with --resume. Two runs
    into one OUT at once: the second is refused."""
    if len(inputs) < 2:
        fail("give at least one input and the output file: mvq encode IMAGES... OUT.npy")
    *sources_in, out_name = inputs
    out = Path(out_name)
    if out.suffix != ".npy":
        fail(f"the last argument is the output and must end in .npy, got {out_name!r}")
    refuse_existing([out, manifest_path(out), masks_path(out)], overwrite)
    files.check_writable(out, manifest_path(out), masks_path(out))
    dev = pick_device(device)
    pipe = load_pipeline(model, dev)
    sources = list(data_io.iter_sources(sources_in))
    if not sources:
        fail(f"no images found in {', '.join(sources_in)}")
    with files.output_claimed(out, "mvq encode"):
        refuse_existing([out, manifest_path(out), masks_path(out)], overwrite)  # a run that held the claim may have written it
        _encode(out, model, pipe, sources, batch_size, workers, skip_bad, fit, overwrite, resume, dev)


def _encode(out, model, pipe, sources, batch_size, workers, skip_bad, fit, overwrite, resume, dev) -> None:
    """The encoding proper, with the claim on OUT held."""
    from ..inference import gather_encoded, iter_encoded
    from ..partial import PartialEncode, encode_key

    tok = pipe.tokenizer
    partial = PartialEncode(out, encode_key(pipe.tokenizer_id, sources, batch_size, skip_bad, fit, dev.type), resume)
    on_interrupt(partial.interrupted)
    if resume:
        console.print(f"resuming: {partial.done:,} of {partial.total:,} images were encoded by the interrupted run",
                      soft_wrap=True, highlight=False)
    if partial.discarded:
        console.print(f"note: started over: the {partial.discarded:,} images an interrupted run had encoded are "
                      "discarded (--resume continues such a run)", soft_wrap=True, highlight=False)
    skipped = 0
    with progress_bar("encode", len(sources), start=partial.done) as bar:
        for batch in iter_encoded(tok, sources, batch_size, workers, skip_bad, dev, start=partial.done, fit=fit):
            partial.save(batch)
            skipped += len(batch.skipped)
            bar.advance(len(batch.ok), skipped=skipped)
    result = gather_encoded(partial.batches(), sources, PictureTally(tok.cfg.image_size, fit))
    warn(mismatch_notice(result.pictures, tok.cfg.channels, model))
    manifest = make_manifest(pipe.source, pipe.config_hash, tok.tokens_per_image, tok.vocab_size, result.sources,
                             result.skipped, tokenizer_id=pipe.tokenizer_id, num_masks=tok.num_masks, fit=fit)
    save_tokens(out, result.ids, manifest, overwrite, masks=result.masks)
    partial.discard()
    note = f", skipped {len(result.skipped)} (listed in {manifest_path(out)})" if result.skipped else ""
    console.print(f"wrote {out}: {len(result.ids)} images x {tok.tokens_per_image} tokens{note}")
