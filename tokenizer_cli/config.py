"""Configuration dataclasses: everything needed to rebuild a tokenizer or a prior.

They round-trip through plain dicts (`to_dict` / `from_dict`) so a model folder's
config.json can be read without unpickling anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

QUANTIZER_KINDS = ("vq", "fsq", "mvq")
LAYOUTS = ("1d", "grid")
MVQ_WINNERS = ("all", "code")


@dataclass
class QuantizerConfig:
    kind: str = "mvq"  # vq | fsq | mvq
    dim: int = 16  # D: size of one latent token (fsq: forced to len(levels))
    codebook_size: int = 16  # K: code vectors (vq, mvq); fsq ignores it
    levels: list[int] = field(default_factory=lambda: [8, 6, 5])  # fsq only: levels per dim
    mask_bits: int = 4  # mvq: g, length of a binary mask configuration
    num_masks: int = 0  # mvq: M masks kept (0 = all 2^g - 1)
    mask_hidden: int = 64  # mvq: width of the small pre/var/out MLPs
    subset_ratio: float = 1.0  # mvq: fraction of masks sampled per latent in training (1.0 = all: measured best)
    winner: str = "all"  # mvq training: nearest of all (k, m) in the subset | "code": nearest c_k first, then its masks
    beta: float = 0.25  # vq/mvq: commitment loss weight (VQ-VAE)
    decay: float = 0.99  # vq: EMA decay of the codebook
    dead_threshold: float = 0.03  # vq/mvq: restart a code whose EMA usage falls below this fraction of a fair share

    def __post_init__(self) -> None:
        if self.kind not in QUANTIZER_KINDS:
            raise ValueError(f"quantizer kind must be one of {QUANTIZER_KINDS}, got {self.kind!r}")
        if self.kind == "fsq":
            self.levels = [int(x) for x in self.levels]
            if not self.levels or min(self.levels) < 2:
                raise ValueError("fsq levels must be integers >= 2")
            self.dim = len(self.levels)
        if self.kind == "mvq":
            if self.winner not in MVQ_WINNERS:
                raise ValueError(f"mvq winner must be one of {MVQ_WINNERS}, got {self.winner!r}")
            full = 2**self.mask_bits - 1
            if self.num_masks <= 0 or self.num_masks > full:
                self.num_masks = full

    @property
    def vocab_size(self) -> int:
        """Token vocabulary: the number of distinct ids one token can take."""
        if self.kind == "fsq":
            out = 1
            for level in self.levels:
                out *= level
            return out
        if self.kind == "mvq":
            return self.codebook_size * self.num_masks
        return self.codebook_size


@dataclass
class TokenizerConfig:
    image_size: int = 28  # H = W of the images the model reads and writes
    channels: int = 1  # 1 (grey) or 3 (RGB)
    tokens: int = 2  # T: tokens per image (grid layout: h*w of the last feature map)
    layout: str = "1d"  # 1d: flatten -> linear -> T x D; grid: feature map cells are tokens
    base_channels: int = 32  # width of the first conv stage; doubled at each downsample
    res_blocks: int = 1  # residual blocks per resolution
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self) -> None:
        if isinstance(self.quantizer, dict):
            self.quantizer = QuantizerConfig(**self.quantizer)
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        if self.tokens < 1:
            raise ValueError("tokens must be >= 1")


@dataclass
class PriorConfig:
    vocab_size: int = 240  # token ids 0..vocab_size-1 (the start token is added on top)
    tokens: int = 2  # sequence length T
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads
    n_embd: int = 128  # model width
    dropout: float = 0.0  # dropout in training (0 keeps small priors deterministic)
    num_classes: int = 0  # >0: class-conditional, the class replaces the start token


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def tokenizer_config_from_dict(d: dict) -> TokenizerConfig:
    d = dict(d)
    d["quantizer"] = QuantizerConfig(**d.get("quantizer", {}))
    return TokenizerConfig(**d)


def config_hash(d: dict) -> str:
    """Short stable hash of a config dict, stored in token manifests."""
    blob = json.dumps(d, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
