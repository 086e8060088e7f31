"""`mvq explore`: what one MVQ code vector looks like under each of its mask configurations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import data as data_io
from .. import files
from ..pipeline import load_pipeline
from .common import DEFAULT_MODEL, DeviceOpt, ModelOpt, OverwriteOpt, console, fail, pick_device
from .encode import refuse_existing


def explore(
    code: Annotated[int, typer.Option("--code", "-k", help="Code vector index k (0..K-1).")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG grid to write.")] = Path("explore.png"),
    model: ModelOpt = DEFAULT_MODEL,
    image: Annotated[Path | None, typer.Option("--image", help="Reference image whose tokens fill the other positions (default: token 0 everywhere).")] = None,
    blend: Annotated[list[str] | None, typer.Option("--blend", help="Two mask ids A,B: add a row blending mask A into mask B (repeatable).")] = None,
    steps: Annotated[int, typer.Option("--steps", min=2, max=64, help="Images per blend row.")] = 8,
    draws: Annotated[int, typer.Option("--draws", min=0, max=64, help="MVQ with sampled masks: add a row decoding the reference tokens with masks drawn under this many seeds (0: none).")] = 8,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Decode code vector k under every mask configuration: row p varies token position p, column m is mask m.

    Blend rows interpolate between two masks; for MVQ with sampled masks a last row decodes the reference
    image's tokens with masks drawn under --draws seeds (the same tokens, different hypotheses)."""
    import torch

    refuse_existing([out], overwrite)
    files.check_writable(out)
    blends = [_mask_pair(spec) for spec in blend or []]
    pipe = load_pipeline(model, pick_device(device))
    cfg = pipe.tokenizer.cfg
    reference = None
    if image is not None:
        reference = torch.from_numpy(data_io.load_image(image, cfg.image_size, cfg.channels))[None]
    grid = pipe.explore(code, reference, blends, steps, draws)
    files.save_png(grid, out)
    q = pipe.tokenizer.quantizer
    console.print(f"wrote {out}: code {code} under {q.num_masks} masks at each of {cfg.tokens} positions"
                  + (f", {len(blends)} blend rows" if blends else ""))


def _mask_pair(spec: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in spec.split(","))
    except ValueError:
        fail(f"--blend takes two mask ids like 0,5; got {spec!r}")
    return a, b
