"""`mvq decode`: tokens.npy -> one PNG per row (and/or a contact sheet)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from .. import data as data_io
from ..hub import load_pipeline
from ..tokenfile import load_tokens, validate_tokens
from .common import DEFAULT_MODEL, BatchOpt, DeviceOpt, ModelOpt, OverwriteOpt, console, fail, pick_device, progress_bar

if TYPE_CHECKING:
    import torch


def decode(
    tokens_file: Annotated[Path, typer.Argument(help="Tokens .npy written by `mvq encode` or `mvq sample`.")],
    out_dir: Annotated[Path | None, typer.Argument(help="Folder for one PNG per row.")] = None,
    grid: Annotated[Path | None, typer.Option("--grid", help="Also (or only) write a contact sheet PNG here.")] = None,
    model: ModelOpt = DEFAULT_MODEL,
    batch_size: BatchOpt = 256,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Turn tokens back into images."""
    import torch

    if out_dir is None and grid is None:
        fail("give an output folder, --grid FILE.png, or both")
    if grid is not None and grid.suffix.lower() != ".png":
        fail(f"--grid must name a .png file, got {grid}")
    if grid is not None and grid.exists() and not overwrite:
        fail(f"{grid} already exists (pass --overwrite to replace it)")
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        fail(f"{out_dir} exists and is not a folder")
    if out_dir is not None and out_dir.is_dir() and any(out_dir.glob("*.png")) and not overwrite:
        fail(f"{out_dir} already holds PNG files (pass --overwrite to replace them)")
    data_io.check_writable(grid, folders=[out_dir])
    tokens, _ = load_tokens(tokens_file)
    dev = pick_device(device)
    pipe = load_pipeline(model, dev)
    ids = validate_tokens(tokens, pipe.tokenizer.tokens_per_image, pipe.tokenizer.vocab_size)
    images = decode_all(pipe.tokenizer, torch.from_numpy(ids), batch_size, dev)
    write_images(images, out_dir, grid)


def decode_all(tokenizer, ids: torch.Tensor, batch_size: int, dev: torch.device):
    """uint8 images for token rows, decoded in batches with a progress bar."""
    chunks = []
    with progress_bar("decode", len(ids)) as bar:
        for start in range(0, len(ids), batch_size):
            chunk = tokenizer.decode(ids[start : start + batch_size].to(dev))
            chunks.append(data_io.to_uint8(chunk.float().cpu()))
            bar.advance(len(chunk))
    return np.concatenate(chunks)


def write_images(images, out_dir: Path | None, grid: Path | None) -> None:
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        width = max(5, len(str(len(images) - 1)))
        for i, img in enumerate(images):
            data_io.save_png(img, out_dir / f"{i:0{width}d}.png")
        console.print(f"wrote {len(images)} PNGs to {out_dir}")
    if grid is not None:
        data_io.save_png(data_io.make_grid(images), grid)
        console.print(f"wrote {grid}")
