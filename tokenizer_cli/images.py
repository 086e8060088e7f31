"""Pixel conversions, in one place: the models read float32 (C, H, W) in [-1, 1] (uint8 v -> v / 127.5 - 1)
and write back through `to_uint8`, the exact inverse; any PIL image mode and size becomes the model's input."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image

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


FITS = ("crop", "pad")
DEFAULT_FIT = "crop"
FIT_HELP = ("How a picture that is not square becomes the model's square: 'crop' (the default) scales its shorter "
            "side to the model's and keeps the centre, so the model sees a full frame without bars, as in its "
            "training; 'pad' scales its longer side and fills the rest with the picture's own edge colour, so "
            "nothing is cut off. Either way a large picture is shrunk with antialiasing, and a smaller one is "
            "enlarged, with a warning.")
COLOUR_SPREAD = 32  # a pixel is coloured when its channels differ by more than this (of 255): JPEG noise stays under
COLOUR_SHARE = 0.02  # and a picture is colour when more than this share of its pixels are


class PictureInfo(NamedTuple):
    """What a picture was before it became the model's input: what tells a user that pictures do not fit a model."""

    width: int
    height: int
    colour: bool  # coloured pixels seen, not only an RGB mode (a grey photo saved as RGB is grey)


def _as_l_or_rgb(img: Image.Image) -> Image.Image:
    """Any mode -> L or RGB, as the picture is: transparency composited on white, 16-bit and float scaled."""
    if img.mode.startswith("I") or img.mode == "F":
        return _high_depth_to_l(img)
    if img.mode in ("LA", "La", "PA", "RGBa", "RGBA") or img.has_transparency_data:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)  # alpha on white
    if img.mode in ("L", "RGB"):
        return img
    if img.mode == "1":
        return img.convert("L")
    return img.convert("RGB")  # CMYK, P, YCbCr...: through RGB, Pillow's best-supported path


def _edge_colour(img: Image.Image) -> int | tuple[int, ...]:
    """Median colour of a picture's outermost pixels: what `pad` fills with, so bars continue its background."""
    a = np.asarray(img)
    edge = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    median = np.median(edge, axis=0).round().astype(int)
    return int(median) if median.ndim == 0 else tuple(int(v) for v in median)


def fit_square(img: Image.Image, size: int, fit: str = DEFAULT_FIT) -> Image.Image:
    """An L or RGB picture -> size x size, antialiased (a large picture is reduced before the Lanczos filter).

    crop: the shorter side becomes `size` and the centre is kept; pad: the longer side becomes `size` and the
    picture is centred on its edge colour."""
    w, h = img.size
    lanczos = Image.Resampling.LANCZOS
    if fit == "crop":
        side = min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)  # the centre square, in source pixels
        return img.resize((size, size), lanczos, box=box, reducing_gap=3.0)
    if fit == "pad":
        scale = size / max(w, h)
        inner = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = img.resize(inner, lanczos, reducing_gap=3.0)
        canvas = Image.new(img.mode, (size, size), _edge_colour(small))
        canvas.paste(small, ((size - inner[0]) // 2, (size - inner[1]) // 2))
        return canvas
    raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")


def is_colour(img: Image.Image) -> bool:
    """Whether an L or RGB picture shows colour: more than COLOUR_SHARE of its pixels with channels apart."""
    if img.mode != "RGB":
        return False
    a = np.asarray(img, dtype=np.int16)
    spread = a.max(axis=2) - a.min(axis=2)
    return float((spread > COLOUR_SPREAD).mean()) > COLOUR_SHARE


def read_picture(img: Image.Image, size: int, channels: int, fit: str = DEFAULT_FIT) -> tuple[np.ndarray, PictureInfo]:
    """Any-mode PIL image -> (float32 (channels, size, size) in [-1, 1], what the picture was).

    The picture is fitted in its own colours, then converted to the model's channels: colour is judged on the
    small fitted picture, never on a full-size copy."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    img = _as_l_or_rgb(img)
    info_size = img.size
    img = fit_square(img, size, fit)
    info = PictureInfo(*info_size, colour=is_colour(img))
    img = img.convert("L" if channels == 1 else "RGB")
    a = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return (a[None] if channels == 1 else a.transpose(2, 0, 1).copy()), info


def pil_to_float(img: Image.Image, size: int, channels: int, fit: str = DEFAULT_FIT) -> np.ndarray:
    """Any-mode PIL image -> float32 (channels, size, size) in [-1, 1]."""
    return read_picture(img, size, channels, fit)[0]


@dataclass
class PictureTally:
    """A running count of what the pictures read for a model were, added to as they are read (in any order, from
    any worker's results), so that one line afterwards can say when they do not fit the model (fitting.py)."""

    size: int  # the model's side
    fit: str = DEFAULT_FIT
    pictures: int = 0
    colour: int = 0
    upscaled: int = 0  # pictures enlarged to reach the model's side
    smallest: tuple[int, int] | None = None  # (width, height) of the smallest picture enlarged
    short_sides: Counter = field(default_factory=Counter)  # shorter side -> pictures: a median without a list

    def add(self, info: PictureInfo) -> None:
        self.pictures += 1
        self.colour += info.colour
        self.short_sides[min(info.width, info.height)] += 1
        fitted_side = min(info.width, info.height) if self.fit == "crop" else max(info.width, info.height)
        if fitted_side < self.size:
            self.upscaled += 1
            if self.smallest is None or info.width * info.height < self.smallest[0] * self.smallest[1]:
                self.smallest = (info.width, info.height)

    @property
    def mostly_colour(self) -> bool:
        return self.colour * 2 > self.pictures

    @property
    def mostly_grey(self) -> bool:
        return (self.pictures - self.colour) * 2 > self.pictures

    def typical_side(self) -> int:
        """The median shorter side of the pictures (0 before any)."""
        seen = 0
        for side in sorted(self.short_sides):
            seen += self.short_sides[side]
            if seen * 2 >= self.pictures:
                return side
        return 0
