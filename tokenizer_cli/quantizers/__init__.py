"""Quantizers sharing one interface: forward(z (B,T,D)) -> QuantizerOutput, indices_to_codes, vocab_size."""

from ..config import QuantizerConfig
from .base import QuantizerOutput
from .fsq import FSQ
from .mvq import MVQ
from .mvq_joint import JointMVQ
from .vq import VQ


def build_quantizer(cfg: QuantizerConfig):
    if cfg.kind == "vq":
        return VQ(cfg.num_codes, cfg.dim, beta=cfg.beta, decay=cfg.decay, dead_threshold=cfg.dead_threshold)
    if cfg.kind == "fsq":
        return FSQ(cfg.levels)
    masked = dict(mask_bits=cfg.mask_bits, num_masks=cfg.num_masks, hidden=cfg.mask_hidden,
                  subset_ratio=cfg.subset_ratio, beta=cfg.beta, dead_threshold=cfg.dead_threshold,
                  form=cfg.hypothesis_form)
    if cfg.kind == "mvq-joint":
        return JointMVQ(cfg.num_codes, cfg.dim, winner=cfg.winner, **masked)
    return MVQ(cfg.num_codes, cfg.dim, mask_scope=cfg.mask_scope, gradient=cfg.mask_gradient, **masked)


__all__ = ["FSQ", "MVQ", "JointMVQ", "VQ", "QuantizerOutput", "build_quantizer"]
