"""Training and evaluation image sets: Fashion-MNIST (Debian's dataset-fashion-mnist) or an image folder.

One function, `load_images`, serves `mvq train`, `mvq eval` and the scripts, so they read data one way.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from . import data as data_io
from .data import InputError
from .images import DEFAULT_FIT, PictureInfo, PictureTally
from .progress import Progress, no_progress

FASHION = "fashion-mnist"  # the name --data takes for Fashion-MNIST


def load_images(source: str, split: str, size: int, channels: int, limit: int | None = None,
                progress: Progress = no_progress, fit: str = DEFAULT_FIT, tally: PictureTally | None = None
                ) -> np.ndarray:
    """uint8 images (N, H, W) grey or (N, H, W, 3) colour: a Fashion-MNIST split ("train" | "test"), or every
    image under a folder (`split` is ignored; pass the split's own folder), the first `limit` if given, each
    fitted to the square by `fit`; `tally` counts what a folder's pictures were (fitting.mismatch_notice)."""
    if source == FASHION:
        if size != 28 or channels != 1:
            raise InputError(f"{FASHION} is 28x28 grey but {size}x{size}x{channels} images were asked for: "
                             "use --image-size 28 --channels 1, or pass --data FOLDER")
        return data_io.load_fashion_mnist(split=split)[0][:limit]
    sources = folder_sources(source, limit)
    with progress(f"loading {source}", len(sources)) as bar:
        return data_io.load_uint8(sources, size, channels, bar.advance, fit, tally)


def folder_sources(source: str, limit: int | None = None) -> list[data_io.ImageSource]:
    """The images under a folder (or one file), the first `limit` if given."""
    if not Path(source).exists():
        raise InputError(f"{source}: no such folder (and not '{FASHION}')")
    sources = list(itertools.islice(data_io.iter_sources([source]), limit))
    if not sources:
        raise InputError(f"no images found in {source}")
    return sources


def look_at_pictures(source: str, count: int = 200) -> list[PictureInfo]:
    """What `count` pictures spread evenly over a folder are (Fashion-MNIST: 28x28 grey), decoded small: enough
    to choose a tokenizer's shape (fitting.shape_from_pictures) at a bounded cost, whatever the folder's size.
    Unreadable ones are passed over: reading them all later names them."""
    if source == FASHION:
        return [PictureInfo(28, 28, False)]
    sources = folder_sources(source)
    step = max(1, len(sources) / count)
    infos = []
    for i in range(min(count, len(sources))):
        try:
            infos.append(data_io.read_source(sources[int(i * step)], 16, 3)[1])
        except InputError:
            continue
    return infos


def describe(source: str, split: str, count: int) -> str:
    """How records name the images `load_images` read: 'fashion-mnist test (10,000 images)'."""
    return f"{source}{' ' + split if source == FASHION else ''} ({count:,} images)"


def held_out_folder(source: str) -> Path | None:
    """The `test` folder beside a `train` folder, where there is one."""
    p = Path(source)
    held = p.parent / "test" if p.name == "train" else None
    return held if held is not None and held.is_dir() else None


def fashion_labels(split: str) -> np.ndarray:
    return data_io.load_fashion_mnist(split=split)[1]
