"""`mvq decode`: tokens.npy -> one PNG per row (and/or a contact sheet)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Iterable

import numpy as np
import typer

from .. import files
from ..hub import ModelNotFound
from ..pipeline import load_pipeline
from ..tokenfile import manifest_model, manifest_path, manifest_sources, read_manifest, read_token_file
from .common import (DEFAULT_MODEL, BatchOpt, DeviceOpt, MaskSamplingOpt, MaskTemperatureOpt, OverwriteOpt, ScaleOpt,
                     SeedOpt, console, fail, pick_device, progress_bar)

GRID_LIMIT = 1024  # images on one contact sheet; beyond it the sheet shows the first ones and says so


def decode(
    tokens_file: Annotated[Path, typer.Argument(help="Tokens .npy written by `mvq encode` or `mvq sample`.")],
    out_dir: Annotated[Path | None, typer.Argument(help="Folder for one PNG per row.")] = None,
    grid: Annotated[Path | None, typer.Option("--grid", help=f"Also (or only) write a contact sheet PNG here (first {GRID_LIMIT} images).")] = None,
    scale: ScaleOpt = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help=f"Local model folder, shipped default name (see `mvq models`), or Hub id owner/name[@rev]. Default: the model TOKENS.json names (else {DEFAULT_MODEL}).")] = None,
    batch_size: BatchOpt = 256,
    ignore_masks: Annotated[bool, typer.Option("--ignore-masks", help="MVQ with sampled masks: draw masks even where the token file stores them.")] = False,
    mask_sampling: MaskSamplingOpt = "learned",
    mask_temperature: MaskTemperatureOpt = 1.0,
    seed: SeedOpt = 0,
    force: Annotated[bool, typer.Option("--force", help="Decode tokens that another tokenizer wrote (their manifest names it).")] = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Turn tokens back into images, one PNG per row named after its source (boot.png -> boot.png).

    For MVQ with sampled masks the masks stored by `mvq encode` (TOKENS.masks.npy) make the decoding exact;
    without them (or with --ignore-masks) masks are drawn from the model's p(m | k), or uniformly, with
    --mask-temperature and --seed."""
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
    files.check_writable(grid, folders=[out_dir])
    dev = pick_device(device)
    manifest = read_manifest(tokens_file)
    named = manifest_model(manifest, tokens_file) if model is None else None
    if named is not None:
        console.print(f"model {named} (named in {manifest_path(tokens_file)})", highlight=False, soft_wrap=True)
    try:
        pipe = load_pipeline(model or named or DEFAULT_MODEL, dev)
    except ModelNotFound as err:
        if named is None:
            raise
        fail(f"{err} (it is the model {manifest_path(tokens_file)} names: pass --model)")
    tok = pipe.tokenizer
    ids, masks = read_token_file(tokens_file, pipe, with_masks=not ignore_masks, force=force)
    sources = manifest_sources(manifest, len(ids))
    from ..inference import decode_tokens

    with progress_bar("decode", len(ids)) as bar:
        batches = decode_tokens(tok, ids, masks, batch_size, dev, seed=seed, mask_temperature=mask_temperature,
                                mask_sampling=mask_sampling, on_batch=bar.advance)
        count = write_images(batches, out_dir, grid, total=len(ids),
                             names=files.image_names(sources) if sources is not None else None, scale=scale)
    if tok.num_masks:  # (the lines above said what was written)
        how = "with the stored masks" if masks is not None else f"masks drawn ({mask_sampling}, seed {seed})"
        console.print(f"decoded {count} images {how}")


def write_images(batches: Iterable[np.ndarray], out_dir: Path | None, grid: Path | None, total: int = 0,
                 names: list[str] | None = None, scale: int | None = None) -> int:
    """Write uint8 image batches as PNGs named `names` (numbered by default) and/or one contact sheet of tiles
    enlarged by `scale` (files.sheet_scale's default); returns the number of images.

    Images are written as they come, so memory holds one batch (and the sheet's first GRID_LIMIT images).
    The PNGs go to a temp folder that takes out_dir's place at the end, so a failure leaves none of them."""
    sheet: list[np.ndarray] = []
    count, width = 0, max(5, len(str(max(total, 1) - 1)))
    with files.staged_folder(out_dir) if out_dir is not None else nullcontext() as staging:
        for batch in batches:
            if out_dir is not None:
                for img in batch:
                    files.save_png(img, staging / (names[count] if names is not None else f"{count:0{width}d}.png"))
                    count += 1
            else:
                count += len(batch)
            if grid is not None and sum(map(len, sheet)) < GRID_LIMIT:
                sheet.append(batch[: GRID_LIMIT - sum(map(len, sheet))])
    if out_dir is not None:
        console.print(f"wrote {count} PNGs to {out_dir}")
    if grid is not None and sheet:
        tiles = np.concatenate(sheet)
        files.save_png(files.make_grid(files.enlarge(tiles, files.sheet_scale(tiles.shape[1], scale))), grid)
        note = f" (the first {GRID_LIMIT} of {count})" if count > GRID_LIMIT else ""
        console.print(f"wrote {grid}{note}")
    return count
