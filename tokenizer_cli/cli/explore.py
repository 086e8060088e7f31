"""`mvq explore`: what one MVQ code vector looks like under each of its mask configurations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from .. import data as data_io
from ..images import to_uint8
from ..hub import load_pipeline
from ..config import MASKED_KINDS
from .common import DEFAULT_MODEL, DeviceOpt, ModelOpt, OverwriteOpt, console, fail, inference_mode, pick_device
from .encode import refuse_existing

if TYPE_CHECKING:
    import torch


@inference_mode
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
    dev = pick_device(device)
    pipe = load_pipeline(model, dev)
    tok = pipe.tokenizer
    q = tok.quantizer
    if tok.cfg.quantizer.kind not in MASKED_KINDS:
        fail(f"model {model!r} is not an MVQ model: masks exist only in MVQ")
    if not 0 <= code < q.num_codes:
        fail(f"--code must be in 0..{q.num_codes - 1}, got {code}")
    base, base_masks = _base_tokens(tok, image, dev)  # (1, T) each; masks None unless sampled-mask MVQ
    points = q.hypotheses()  # (K, M, D)
    base_latents = q.indices_to_codes(base, base_masks)  # (1, T, D)
    rows = []
    for pos in range(tok.tokens_per_image):  # one row per token position
        z = base_latents.repeat(q.num_masks, 1, 1)
        z[:, pos] = points[code]
        rows.append(tok.decode_latents(z).clamp(-1, 1))
    for spec in blend or []:
        a, b = _mask_pair(spec, q.num_masks)
        weights = torch.linspace(0, 1, steps, device=dev)[:, None]
        masks = (1 - weights) * q.masks[a] + weights * q.masks[b]  # (steps, g)
        z = base_latents.repeat(steps, 1, 1)
        z[:, 0] = q.expand(q.codebook[code : code + 1], masks)[0]
        rows.append(tok.decode_latents(z).clamp(-1, 1))
    if tok.num_masks and draws:  # the same tokens, masks drawn from p(m | k) under seeds 0..draws-1
        rows.append(torch.cat([tok.decode(base, generator=torch.Generator(device=dev).manual_seed(s))
                               for s in range(draws)]))
    width = max(len(r) for r in rows)
    images = [to_uint8(r.float().cpu()) for r in rows]
    blank = np.full_like(images[0][:1], 255)
    grid = np.concatenate([np.concatenate([r] + [blank] * (width - len(r))) for r in images])
    data_io.save_png(data_io.make_grid(grid, ncols=width), out)
    console.print(f"wrote {out}: code {code} under {q.num_masks} masks at each of {tok.tokens_per_image} positions"
                  + (f", {len(blend)} blend rows" if blend else ""))


def _mask_pair(spec: str, num_masks: int) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in spec.split(","))
    except ValueError:
        fail(f"--blend takes two mask ids like 0,5; got {spec!r}")
    if not (0 <= a < num_masks and 0 <= b < num_masks):
        fail(f"--blend mask ids must be in 0..{num_masks - 1}, got {spec!r}")
    return a, b


def _base_tokens(tok, image: Path | None, dev: torch.device) -> torch.Tensor:
    import torch

    if image is not None:
        x = torch.from_numpy(data_io.load_image(image, tok.cfg.image_size, tok.cfg.channels))[None].to(dev)
        return tok.encode(x, with_masks=True)
    ids = torch.zeros(1, tok.tokens_per_image, dtype=torch.long, device=dev)
    return ids, torch.zeros_like(ids) if tok.num_masks else None
