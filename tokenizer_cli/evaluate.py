"""Quality measures of a tokenizer on held-out images (MSE/PSNR on [-1, 1] pixels, token usage)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .quantizers.base import usage_stats
from .images import to_float


@torch.inference_mode()
def reconstruction_metrics(tokenizer, images: np.ndarray, batch_size: int = 500, device: torch.device | str = "cpu",
                           on_batch: Callable[[int], None] | None = None,
                           on_pair: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> dict:
    """MSE on [-1, 1] pixels, PSNR on [0, 1] pixels, and the share of the vocabulary used.

    `on_pair(images, reconstructions)` sees every batch, so other measures share this one pass."""
    tokenizer.eval().to(device)
    sq_err, count, all_ids = 0.0, 0, []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size]).to(device)
        ids, masks = tokenizer.encode(x, with_masks=True)
        recon = tokenizer.decode(ids, masks)  # MVQ with sampled masks: the winning masks, as `mvq decode` uses
        sq_err += (recon.float() - x).pow(2).sum().item()
        if on_pair is not None:
            on_pair(x, recon)
        count += x.numel()
        all_ids.append(ids.cpu())
        if on_batch is not None:
            on_batch(len(x))
    mse = sq_err / count
    ids = torch.cat(all_ids)
    usage, perplexity = usage_stats(ids, tokenizer.vocab_size)
    return {
        "images": len(images),
        "mse": mse,
        "psnr": 10 * math.log10(4.0 / mse),  # [-1,1] range is 2 wide: PSNR of the [0,1] image
        "codebook_usage": usage,
        "tokens_used": int(ids.unique().numel()),
        "perplexity": perplexity,
    }
