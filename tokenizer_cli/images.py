"""Pixel conversions, in one place: the models read float32 (C, H, W) in [-1, 1] (uint8 v -> v / 127.5 - 1)
and write back through `to_uint8`, the exact inverse; any PIL image mode and size becomes the model's input."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:  # torch is imported where it is used, so `mvq --help` starts without it
    import torch


def to_float(batch: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W) or (B, H, W, C) -> float (B, C, H, W) in [-1, 1]."""
    import torch

    x = torch.tensor(np.asarray(batch))  # a copy: IDX arrays are read-only buffers
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> uint8 (B, H, W, C), or (B, H, W) when C == 1."""
    if images.ndim != 4:
        raise ValueError(f"to_uint8 needs a (B, C, H, W) tensor, got shape {tuple(images.shape)}")
    import torch

    x = torch.nan_to_num(images.detach().float().cpu(), nan=0.0)
    x = ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)  # exact inverse of v / 127.5 - 1
    out = x.permute(0, 2, 3, 1).numpy()
    return out[..., 0] if out.shape[-1] == 1 else out


def float_to_uint8(array: np.ndarray) -> np.ndarray:
    """One float32 (C, H, W) image in [-1, 1] -> uint8 (H, W, C), the inverse of `pil_to_float`'s scaling."""
    return np.round((array.transpose(1, 2, 0) + 1) * 127.5).clip(0, 255).astype(np.uint8)


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """I;16*, I and F -> 8-bit L.

    16-bit modes are full-scale 0..65535, so divide by 257. Mode I in 0..255 is 8-bit data kept as is,
    in 0..65535 it is 16-bit (/257); F in [0, 1] is scaled by 255, in [0, 255] kept; anything else is
    stretched from its own min..max.
    """
    a = np.asarray(img).astype(np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if img.mode.startswith("I;16") or (img.mode == "I" and lo >= 0 and 255 < hi <= 65535):
        a = a / 257.0
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255.0
    elif not (lo >= 0 and hi <= 255):
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")


def pil_to_float(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """Any-mode PIL image -> float32 (channels, size, size) in [-1, 1]."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if img.mode.startswith("I") or img.mode == "F":
        img = _high_depth_to_l(img)
    elif img.mode in ("LA", "La", "PA", "RGBa", "RGBA") or img.has_transparency_data:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)  # alpha on white
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")  # CMYK, 1, P, YCbCr...: through RGB, Pillow's best-supported path
    img = img.convert("L" if channels == 1 else "RGB")
    img = ImageOps.fit(img, (size, size), method=Image.Resampling.LANCZOS)  # shorter side to size, center crop
    a = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return a[None] if channels == 1 else a.transpose(2, 0, 1).copy()
