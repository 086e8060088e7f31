"""Inference in CPU-sized pieces.

On a CPU a convolution over a big batch of big images runs slower per image than over a small one: its
activations no longer fit the caches. Measured with scripts/cpu_batch_sweep.py (AMD EPYC, AVX2, one thread,
1,000 images of 64x64 RGB): fsq-pictures-t64's encode+decode took 16.2 CPU s at batch 500, 8.1 at 64 and 8.5
at 32; fd-pictures-classifier's features 2.45, 1.41 and 1.56. On 2,000 images of 28x28 grey, vq-fmnist-grid49
took 4.99 s at batch 1000, 3.19 at 334 and 2.97 at 128. So without a gradient a CPU forward pass runs in
pieces of at most CPU_PIECE_PIXELS pixels (64 images of 64x64, 334 of 28x28), whatever batch its caller
chose; on a GPU, and wherever a gradient is kept, the batch goes through whole. (Used by the tokenizer and by
the feature nets of classifier.py.)
"""

from __future__ import annotations

from typing import Callable

import torch

CPU_PIECE_PIXELS = 64 * 64 * 64


def piece_size(x: torch.Tensor, pixels_per_item: int) -> int | None:
    """Items a piece of `x` may hold, or None when `x` goes through whole (not on a CPU, gradients on, or
    small enough already)."""
    if x.device.type != "cpu" or torch.is_grad_enabled():
        return None
    size = max(1, CPU_PIECE_PIXELS // max(1, pixels_per_item))
    return size if size < x.shape[0] else None


def in_cpu_pieces(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, pixels_per_item: int) -> torch.Tensor:
    """fn(x), with x split along its first axis into CPU-sized pieces where that is faster (see above).
    `fn` must treat the items of a batch independently (no batch statistics, no random draws)."""
    size = piece_size(x, pixels_per_item)
    if size is None:
        return fn(x)
    return torch.cat([fn(part) for part in x.split(size)])
