"""A Vision-Transformer encoder and decoder over image patches (TiTok-style for few tokens).

layout "1d": T learned latent tokens ride along the patch tokens through the encoder; their outputs are the
latents (TiTok, Yu et al. 2024, arXiv 2406.07550). The decoder reads the T quantized latents beside one learned
[MASK] token per patch and writes each patch's pixels from its output.
layout "grid": every patch is a token (T = number of patches), the ViT-VQGAN layout.

The work is large matmuls, which CPUs with native bf16 (AMX, AVX512-BF16) run several times faster than convs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TokenizerConfig


def transformer(width: int, layers: int, heads: int) -> nn.TransformerEncoder:
    """Pre-norm blocks with GELU MLPs of 4x width, no dropout."""
    layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)


class ViTEncoder(nn.Module):
    """Images (B, C, H, W) -> latents (B, T, D)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        p, w = cfg.patch_size, cfg.vit_width
        self.layout, self.tokens = cfg.layout, cfg.tokens
        self.num_patches = (cfg.image_size // p) ** 2
        self.patchify = nn.Conv2d(cfg.channels, w, p, stride=p)
        self.position = nn.Parameter(torch.randn(1, self.num_patches, w) * 0.02)
        if cfg.layout == "1d":
            self.latent_queries = nn.Parameter(torch.randn(1, cfg.tokens, w) * 0.02)
        self.blocks = transformer(w, cfg.vit_layers, cfg.vit_heads)
        self.to_latent = nn.Linear(w, cfg.quantizer.dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patchify(images).flatten(2).transpose(1, 2) + self.position  # (B, P, W)
        if self.layout == "1d":
            x = torch.cat([x, self.latent_queries.expand(x.shape[0], -1, -1)], dim=1)  # (B, P + T, W)
        x = self.blocks(x)
        return self.to_latent(x[:, -self.tokens:] if self.layout == "1d" else x)  # (B, T, D)


class ViTDecoder(nn.Module):
    """Quantized latents (B, T, D) -> images (B, C, H, W), unbounded (the tokenizer clamps on decode)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        p, w = cfg.patch_size, cfg.vit_width
        self.layout, self.patch, self.channels = cfg.layout, p, cfg.channels
        self.side = cfg.image_size // p
        num_patches = self.side**2
        self.from_latent = nn.Linear(cfg.quantizer.dim, w)
        self.position = nn.Parameter(torch.randn(1, num_patches, w) * 0.02)
        if cfg.layout == "1d":
            self.latent_position = nn.Parameter(torch.randn(1, cfg.tokens, w) * 0.02)
            self.patch_query = nn.Parameter(torch.randn(1, 1, w) * 0.02)  # the [MASK] token of every patch
        self.blocks = transformer(w, cfg.vit_layers, cfg.vit_heads)
        self.to_pixels = nn.Linear(w, cfg.channels * p * p)
        # A 3x3 conv over the assembled image lets neighbouring patches agree at their seams.
        self.smooth = nn.Conv2d(cfg.channels, cfg.channels, 3, padding=1)

    def forward(self, z_q: torch.Tensor) -> torch.Tensor:
        b = z_q.shape[0]
        latents = self.from_latent(z_q)  # (B, T, W)
        if self.layout == "1d":
            patches = self.patch_query.expand(b, self.position.shape[1], -1) + self.position
            x = self.blocks(torch.cat([patches, latents + self.latent_position], dim=1))[:, : patches.shape[1]]
        else:
            x = self.blocks(latents + self.position)  # (B, P, W)
        pixels = self.to_pixels(x).transpose(1, 2)  # (B, C*p*p, P)
        image = F.fold(pixels, (self.side * self.patch,) * 2, self.patch, stride=self.patch)  # (B, C, H, W)
        return image + self.smooth(image)
