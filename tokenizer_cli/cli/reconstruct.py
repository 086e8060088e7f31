"""`mvq reconstruct`: pictures -> a sheet of each beside the model's reconstruction, in one step."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated

import typer

from .. import data as data_io
from .. import files
from ..fitting import mismatch_notice
from ..images import DEFAULT_FIT, PictureTally
from ..pipeline import load_pipeline
from .common import (DEFAULT_MODEL, DeviceOpt, FitOpt, ModelOpt, OverwriteOpt, ScaleOpt, console, fail, pick_device,
                     warn)

InputsArg = Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or IDX files, then SHEET.png.")]


def reconstruct(
    inputs: InputsArg,
    model: ModelOpt = DEFAULT_MODEL,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=4096, help="Show the first N pictures.")] = 32,
    fit: FitOpt = DEFAULT_FIT,
    scale: ScaleOpt = None,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """See what the model keeps of your pictures: a sheet of pairs, each picture (as the model reads it, at its
    size) beside its reconstruction (encoded to tokens and decoded), tiles enlarged to be readable."""
    if len(inputs) < 2:
        fail("give at least one input and the sheet to write: mvq reconstruct IMAGES... SHEET.png")
    *sources_in, out_name = inputs
    out = Path(out_name)
    if out.suffix.lower() != ".png":
        fail(f"the last argument is the sheet and must end in .png, got {out_name!r}")
    if out.exists() and not overwrite:
        fail(f"{out} already exists (pass --overwrite to replace it)")
    files.check_writable(out)
    sources = list(itertools.islice(data_io.iter_sources(sources_in), limit + 1))  # one more: are there others?
    if not sources:
        fail(f"no images found in {', '.join(sources_in)}")
    more, sources = len(sources) > limit, sources[:limit]
    pipe = load_pipeline(model, pick_device(device))
    cfg = pipe.tokenizer.cfg
    pictures = PictureTally(cfg.image_size, fit)
    originals = data_io.load_uint8(sources, cfg.image_size, cfg.channels, fit=fit, tally=pictures)
    warn(mismatch_notice(pictures, cfg.channels, model))
    from ..images import to_float

    recon = pipe.reconstruct(to_float(originals), output="numpy")
    names = [Path(src.path).stem + ("" if src.index is None else f"#{src.index}") for src in sources]
    files.save_png(files.comparison_sheet(originals, recon, scale, names=names), out)
    psnr = files.psnr_text(originals, recon)
    tile = cfg.image_size * files.sheet_scale(cfg.image_size, scale)
    note = f" (the first {limit}: --limit for more)" if more else ""
    console.print(f"wrote {out}: {len(sources)} pictures{note} beside their reconstructions by {model}, "
                  f"{tile} px tiles; {psnr}", highlight=False, soft_wrap=True)
