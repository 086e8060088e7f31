"""Convolutional autoencoder with a quantized bottleneck of T tokens.

layout "1d": conv features -> flatten -> linear -> (T, D); few tokens per image.
layout "grid": each cell of the last feature map is a token (T = h*w), as in VQ-VAE.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TokenizerConfig
from ..quantizers import QuantizerOutput, build_quantizer


def norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1), norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def num_downsamples(cfg: TokenizerConfig) -> int:
    """How many stride-2 stages: grid layouts stop at sqrt(T) cells a side, 1d ones at <= 8."""
    if cfg.layout == "grid":
        side = math.isqrt(cfg.tokens)
        ratio = cfg.image_size // side if side else 0
        if side * side != cfg.tokens or side * ratio != cfg.image_size or ratio & (ratio - 1):
            raise ValueError(
                f"grid layout needs T = side^2 with image_size / side a power of two; "
                f"got T={cfg.tokens} for {cfg.image_size}x{cfg.image_size}"
            )
        return ratio.bit_length() - 1
    n, size = 0, cfg.image_size
    while size > 8 and size % 2 == 0:
        size //= 2
        n += 1
    return n


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        ch = cfg.base_channels
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, ch, 3, padding=1)]
        for _ in range(num_downsamples(cfg)):
            layers += [ResBlock(ch) for _ in range(cfg.res_blocks)]
            layers.append(nn.Conv2d(ch, ch * 2, 4, stride=2, padding=1))
            ch *= 2
        layers += [ResBlock(ch) for _ in range(cfg.res_blocks)] + [norm(ch), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig, in_channels: int):
        super().__init__()
        ch = in_channels
        layers: list[nn.Module] = [ResBlock(ch) for _ in range(cfg.res_blocks)]
        for _ in range(num_downsamples(cfg)):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch // 2, 3, padding=1)]
            ch //= 2
            layers += [ResBlock(ch) for _ in range(cfg.res_blocks)]
        layers += [norm(ch), nn.SiLU(), nn.Conv2d(ch, cfg.channels, 3, padding=1)]
        self.body = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.body(h)


class Tokenizer(nn.Module):
    """Images in [-1, 1] (B, C, H, W) <-> tokens (B, T) int64."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.quantizer = build_quantizer(cfg.quantizer)
        dim = cfg.quantizer.dim
        self.encoder = Encoder(cfg)
        ch = self.encoder.out_channels
        side = cfg.image_size >> num_downsamples(cfg)
        self.feature_shape = (ch, side, side)
        if cfg.layout == "grid":
            self.to_latent: nn.Module = nn.Conv2d(ch, dim, 1)
            self.from_latent: nn.Module = nn.Conv2d(dim, ch, 1)
        else:
            self.to_latent = nn.Linear(ch * side * side, cfg.tokens * dim)
            self.from_latent = nn.Linear(cfg.tokens * dim, ch * side * side)
        self.decoder = Decoder(cfg, ch)

    @property
    def vocab_size(self) -> int:
        """Distinct ids one token can take: the prior's vocabulary."""
        return self.quantizer.vocab_size

    @property
    def num_masks(self) -> int:
        """Masks a token carries beside its id (MVQ with sampled masks), 0 for the other quantizers."""
        return self.quantizer.num_masks if self.cfg.quantizer.has_masks else 0

    @property
    def tokens_per_image(self) -> int:
        return self.cfg.tokens

    def latents(self, images: torch.Tensor) -> torch.Tensor:
        """Continuous pre-quantization latents (B, T, D)."""
        h = self.encoder(images)
        if self.cfg.layout == "grid":
            return self.to_latent(h).flatten(2).transpose(1, 2)  # (B, h*w, D)
        return self.to_latent(h.flatten(1)).view(images.shape[0], self.cfg.tokens, -1)  # (B, T, D)

    def decode_latents(self, z_q: torch.Tensor) -> torch.Tensor:
        b = z_q.shape[0]
        ch, side, _ = self.feature_shape
        if self.cfg.layout == "grid":
            h = self.from_latent(z_q.transpose(1, 2).reshape(b, -1, side, side))
        else:
            h = self.from_latent(z_q.reshape(b, -1)).view(b, ch, side, side)
        return self.decoder(h)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        q = self.quantizer(self.latents(images))
        return self.decode_latents(q.z_q), q

    @torch.inference_mode()
    def encode(self, images: torch.Tensor, with_masks: bool = False):
        """Token ids (B, T) int64; with_masks: (ids, masks (B, T) or None where the model has no masks)."""
        q = self.quantizer(self.latents(images))
        return (q.indices, q.masks) if with_masks else q.indices

    @torch.inference_mode()
    def decode(self, indices: torch.Tensor, masks: torch.Tensor | None = None,
               generator: torch.Generator | None = None, mask_temperature: float = 1.0,
               mask_sampling: str = "learned") -> torch.Tensor:
        """Images in [-1, 1] for token ids (B, T). MVQ with sampled masks uses `masks` (B, T) when given
        (exact reconstruction of encoded images) and draws them otherwise (see MVQ.sample_masks)."""
        if self.num_masks:
            codes = self.quantizer.indices_to_codes(indices, masks, generator=generator,
                                                    temperature=mask_temperature, sampling=mask_sampling)
        else:
            codes = self.quantizer.indices_to_codes(indices)
        return self.decode_latents(codes).clamp(-1, 1)
