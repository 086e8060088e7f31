"""What one MVQ code vector looks like under each of its mask configurations (`mvq explore`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from .config import MASKED_KINDS
from .data import BadArgument, InputError
from .files import make_grid
from .images import to_uint8

if TYPE_CHECKING:
    from .pipeline import Pipeline


@torch.inference_mode()
def mask_grid(pipe: Pipeline, code: int, image: Any = None, blends: Sequence[tuple[int, int]] = (), steps: int = 8,
              draws: int = 8) -> np.ndarray:
    """A uint8 grid image: row p decodes the reference tokens with token p set to code `code` under mask m (column
    m); each blend (a, b) adds a row interpolating mask a into mask b in `steps` images; for MVQ with sampled
    masks a last row decodes the reference tokens with masks drawn under seeds 0..draws-1 (the same tokens,
    different hypotheses). The reference is `image`'s tokens (anything `Pipeline.encode` takes), else code 0
    everywhere."""
    tok = pipe.tokenizer
    q = tok.quantizer
    if tok.cfg.quantizer.kind not in MASKED_KINDS:
        raise InputError(f"model {pipe.source or 'given'!r} is not an MVQ model: masks exist only in MVQ")
    if not 0 <= code < q.num_codes:
        raise BadArgument("code", f"must be in 0..{q.num_codes - 1}, got {code}")
    for a, b in blends:
        if not (0 <= a < q.num_masks and 0 <= b < q.num_masks):
            raise BadArgument("blend", f"mask ids must be in 0..{q.num_masks - 1}, got {a},{b}")
    dev = pipe.device
    if image is not None:
        tokens = pipe.encode(image)
        base = torch.from_numpy(tokens.ids[:1]).to(dev)
        base_masks = torch.from_numpy(tokens.masks[:1]).to(dev) if tokens.masks is not None else None
    else:
        base = torch.zeros(1, tok.tokens_per_image, dtype=torch.long, device=dev)
        base_masks = torch.zeros_like(base) if tok.num_masks else None
    points = q.hypotheses()  # (K, M, D)
    base_latents = q.indices_to_codes(base, base_masks)  # (1, T, D)
    rows = []
    for pos in range(tok.tokens_per_image):  # one row per token position
        z = base_latents.repeat(q.num_masks, 1, 1)
        z[:, pos] = points[code]
        rows.append(tok.decode_latents(z).clamp(-1, 1))
    for a, b in blends:
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
    return make_grid(grid, ncols=width)
