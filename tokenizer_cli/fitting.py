"""Pictures against models: the one line that says when the pictures read for a model do not fit it (colour
into grey, grey into colour, pictures enlarged or far larger than the model) and names the shipped model that
fits them better, and the shape `mvq train tokenizer` takes from pictures when it is not told one.

Shipped models are found by reading weights/*/config.json, so the advice follows whatever is shipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

from .hub import DEFAULT_MODEL, shipped_configs
from .images import PictureInfo, PictureTally

FAR_LARGER = 4  # pictures this many times the model's side are worth a model closer to them, if one is shipped
SIZES = (28, 32, 64)  # sides the tokenizer is built for, when no model is shipped to choose from


class Shape(NamedTuple):
    name: str
    side: int
    channels: int
    psnr: float  # the model's own measured reconstruction PSNR (0 where unmeasured): the better of two alike


def shipped_shapes() -> list[Shape]:
    shapes = []
    for name, cfg in shipped_configs().items():
        psnr = cfg.metrics.psnr if cfg.metrics is not None and cfg.metrics.psnr is not None else 0.0
        shapes.append(Shape(name, cfg.tokenizer.image_size, cfg.tokenizer.channels, psnr))
    return shapes


def describe(side: int, channels: int) -> str:
    return f"{side}x{side} {'colour' if channels == 3 else 'grey'}"


def _distance(side: int, channels: int, picture_side: int, colour: bool) -> tuple[bool, float]:
    """How far a model's shape is from the pictures': a colour mismatch first, then the ratio of the sides."""
    return (channels == 3) != colour, abs(math.log(side / max(picture_side, 1)))


def better_shipped(tally: PictureTally, side: int, channels: int) -> Shape | None:
    """The shipped model that fits the pictures clearly better than a model of (side, channels): right where the
    other is wrong about colour, or at least twice as close in size; of models alike, the default, then the best
    PSNR."""
    colour, picture_side = tally.mostly_colour, tally.typical_side()
    wrong, far = _distance(side, channels, picture_side, colour)
    best = min(shipped_shapes(), default=None,
               key=lambda s: (*_distance(s.side, s.channels, picture_side, colour), s.name != DEFAULT_MODEL, -s.psnr))
    if best is None:
        return None
    best_wrong, best_far = _distance(best.side, best.channels, picture_side, colour)
    if (wrong and not best_wrong) or (best_wrong == wrong and best_far <= far - math.log(2)):
        return best
    return None


def mismatch_notice(tally: PictureTally, channels: int, model: str = "the tokenizer",
                    remedy: str | None = "model") -> str | None:
    """One line saying how the pictures counted in `tally` do not fit a model of `channels` (and of the side
    they were fitted to) called `model`, or None when they fit. It ends with the remedy: a shipped model that
    fits them better ("model": --model X), the option to train one that does ("options": --channels), or none."""
    n, side = tally.pictures, tally.size
    if not n:
        return None
    facts = []
    if channels == 1 and tally.mostly_colour:
        facts.append(f"{_some(tally.colour, n)} colour but {model} reads {describe(side, 1)}, so "
                     f"{'it was' if n == 1 else 'they were'} read as grey")
    elif channels == 3 and tally.mostly_grey:
        facts.append(f"{_some(n - tally.colour, n)} grey but {model} reads {describe(side, 3)}")
    if tally.upscaled:
        w, h = tally.smallest
        smallest = f"{w}x{h}" if tally.upscaled == 1 else f"the smallest {w}x{h}"
        facts.append(f"{_some(tally.upscaled, n)} smaller than {side}x{side} ({smallest}), so enlarged and blurred")
    better = better_shipped(tally, side, channels) if remedy == "model" else None
    typical = tally.typical_side()
    if better is not None and typical >= FAR_LARGER * side and not facts:
        facts.append(f"the pictures are about {typical} px a side, {typical // side} times {model}'s {side}x{side}")
    if not facts:
        return None
    wanted = 3 if tally.mostly_colour else 1
    if better is not None:
        facts.append(f"{better.name} ({describe(better.side, better.channels)}) fits them better: "
                     f"--model {better.name}")
    elif remedy == "options" and wanted != channels:
        facts.append(f"pass --channels {wanted} to train a {'colour' if wanted == 3 else 'grey'} tokenizer")
    return "; ".join(facts)


def _some(k: int, n: int) -> str:
    """'the picture is', 'all 5 pictures are', '3 of 5 pictures are'."""
    return "the picture is" if n == 1 else f"all {n} pictures are" if k == n else f"{k} of {n} pictures are"


def shape_from_pictures(infos: Iterable[PictureInfo]) -> tuple[int, int, str]:
    """(side, channels, why) for a tokenizer of these pictures: colour unless most are grey (a colour model can
    draw grey pictures, a grey one cannot draw colour), and of the sides the shipped models use (SIZES if none),
    the one closest to the pictures' median shorter side."""
    tally = PictureTally(size=0)
    for info in infos:
        tally.add(info)
    channels = 1 if tally.mostly_grey else 3
    typical = tally.typical_side()
    sides = sorted({s.side for s in shipped_shapes()}) or list(SIZES)
    side = min(sides, key=lambda s: (abs(math.log(s / max(typical, 1))), -s))
    why = f"{tally.colour} of {tally.pictures} looked at are colour, their median shorter side is {typical} px"
    return side, channels, why
