"""Quantizers sharing one interface: forward(z (B,T,D)) -> QuantizerOutput, indices_to_codes, codebook_size."""

from ..config import QuantizerConfig
from .base import QuantizerOutput
from .fsq import FSQ
from .mvq import MVQ
from .vq import VQ


def build_quantizer(cfg: QuantizerConfig):
    if cfg.kind == "vq":
        return VQ(cfg.codebook_size, cfg.dim, beta=cfg.beta, decay=cfg.decay, dead_threshold=cfg.dead_threshold)
    if cfg.kind == "fsq":
        return FSQ(cfg.levels)
    return MVQ(
        cfg.codebook_size,
        cfg.dim,
        mask_bits=cfg.mask_bits,
        num_masks=cfg.num_masks,
        hidden=cfg.mask_hidden,
        subset_ratio=cfg.subset_ratio,
        winner=cfg.winner,
        beta=cfg.beta,
        dead_threshold=cfg.dead_threshold,
    )


__all__ = ["FSQ", "MVQ", "VQ", "QuantizerOutput", "build_quantizer"]
