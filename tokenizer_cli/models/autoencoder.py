"""Convolutional autoencoder with a quantized bottleneck of T tokens.

layout "1d": conv features -> flatten -> linear -> (T, D); few tokens per image.
layout "grid": each cell of the last feature map is a token (T = h*w), as in VQ-VAE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TokenizerConfig, grid_downsamples
from ..quantizers import QuantizerOutput, build_quantizer
from .cpu_pieces import in_cpu_pieces
from .vit import ViTDecoder, ViTEncoder


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


def _cpu_bf16_autocast() -> bool:
    if hasattr(torch, "is_autocast_cpu_enabled") and not hasattr(torch, "get_autocast_dtype"):  # torch < 2.4
        return torch.is_autocast_cpu_enabled() and torch.get_autocast_cpu_dtype() == torch.bfloat16
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class Downsample(nn.Conv2d):
    """Conv2d(in, out, 4, stride=2, padding=1), the same parameters; under CPU bf16 autocast it runs as the
    equal 2x2 stride-1 conv over the space-to-depth (pixel-unshuffled) padded input, because oneDNN's bf16
    backward of the strided 4x4 conv is many times slower than the whole rest of the step."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.shape[-1] % 2 or x.shape[-2] % 2 or not _cpu_bf16_autocast():
            return super().forward(x)
        o, i = self.weight.shape[:2]
        # w[o, c, 2a+dy, 2b+dx] -> w2[o, 4c + 2dy + dx, a, b], the channel order of pixel_unshuffle
        w2 = self.weight.view(o, i, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(o, 4 * i, 2, 2)
        return F.conv2d(F.pixel_unshuffle(F.pad(x, (1, 1, 1, 1)), 2), w2, self.bias)


def num_downsamples(cfg: TokenizerConfig) -> int:
    """How many stride-2 stages: grid layouts stop at sqrt(T) cells a side, 1d ones at <= 8."""
    if cfg.layout == "grid":
        return grid_downsamples(cfg.image_size, cfg.tokens)
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
            layers.append(Downsample(ch, ch * 2))
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
        if cfg.backbone == "vit":
            self.encoder: nn.Module = ViTEncoder(cfg)
            self.decoder: nn.Module = ViTDecoder(cfg)
            return
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

    @property
    def output_layer(self) -> nn.Module:
        """The layer that makes the pixels (VQGAN balances its adversarial term by gradients here)."""
        return self.decoder.smooth if self.cfg.backbone == "vit" else self.decoder.body[-1]

    def latents(self, images: torch.Tensor) -> torch.Tensor:
        """Continuous pre-quantization latents (B, T, D)."""
        if self.cfg.backbone == "vit":
            return self.encoder(images)
        h = self.encoder(images)
        if self.cfg.layout == "grid":
            return self.to_latent(h).flatten(2).transpose(1, 2)  # (B, h*w, D)
        return self.to_latent(h.flatten(1)).view(images.shape[0], self.cfg.tokens, -1)  # (B, T, D)

    def decode_latents(self, z_q: torch.Tensor) -> torch.Tensor:
        if self.cfg.backbone == "vit":
            return self.decoder(z_q)
        b = z_q.shape[0]
        ch, side, _ = self.feature_shape
        if self.cfg.layout == "grid":
            h = self.from_latent(z_q.transpose(1, 2).reshape(b, -1, side, side))
        else:
            h = self.from_latent(z_q.reshape(b, -1)).view(b, ch, side, side)
        return self.decoder(h)

    def quantize(self, z: torch.Tensor) -> QuantizerOutput:
        """The quantizer on float32 latents with autocast off: under bf16 autocast its distances, codebook
        updates, FSQ rounding and loss stay float32 (only the conv/linear layers around it run in bf16)."""
        with torch.autocast(z.device.type, enabled=False):
            return self.quantizer(z.float())

    def codes(self, indices: torch.Tensor, **mask_args) -> torch.Tensor:
        """Code vectors (B, T, D) float32 of token ids, computed as in training (autocast off); MVQ with
        sampled masks takes masks=, generator=, temperature=, sampling= (see MVQ.indices_to_codes)."""
        with torch.autocast(indices.device.type, enabled=False):
            return self.quantizer.indices_to_codes(indices, **mask_args)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        q = self.quantize(self.latents(images))
        return self.decode_latents(q.z_q), q

    @torch.inference_mode()
    def encode(self, images: torch.Tensor, with_masks: bool = False):
        """Token ids (B, T) int64; with_masks: (ids, masks (B, T) or None where the model has no masks)."""
        pixels = images.shape[-1] * images.shape[-2]
        q = self.quantize(in_cpu_pieces(self.latents, images, pixels))
        return (q.indices, q.masks) if with_masks else q.indices

    @torch.inference_mode()
    def decode(self, indices: torch.Tensor, masks: torch.Tensor | None = None,
               generator: torch.Generator | None = None, mask_temperature: float = 1.0,
               mask_sampling: str = "learned") -> torch.Tensor:
        """Images in [-1, 1] for token ids (B, T). MVQ with sampled masks uses `masks` (B, T) when given
        (exact reconstruction of encoded images) and draws them otherwise (see MVQ.sample_masks)."""
        mask_args = dict(masks=masks, generator=generator, temperature=mask_temperature, sampling=mask_sampling)
        codes = self.codes(indices, **(mask_args if self.num_masks else {}))  # masks drawn for the whole batch
        return in_cpu_pieces(self.decode_latents, codes, self.cfg.image_size**2).clamp(-1, 1)
