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
    if is_array(source):
        return load_array(Path(source), size, channels, limit)
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


def is_array(source: str) -> bool:
    """Whether --data names a packed image array (load_array) rather than a folder."""
    return source.endswith(".npy") and Path(source).is_file()


def _open_array(path: Path) -> tuple[np.ndarray, int]:
    """A packed image array memory-mapped, and its channels; InputError unless uint8 (N, S, S[, 3])."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise InputError(f"{path}: not a numpy image array ({err})") from None
    if not isinstance(array, np.ndarray):  # a .npz archive under a .npy name loads as an NpzFile
        array.close()
        raise InputError(f"{path}: a .npz archive, not a numpy image array (np.save writes one)")
    have = 1 if array.ndim == 3 else array.shape[-1] if array.ndim == 4 else 0
    if array.dtype != np.uint8 or have not in (1, 3) or array.shape[1] != array.shape[2]:
        raise InputError(f"{path}: holds {array.dtype} {tuple(array.shape)}, not uint8 square images "
                         "(N, S, S[, 3]): pass an image folder")
    return array, have


def array_shape(path: Path) -> tuple[int, int]:
    """(side, channels) of a packed image array, read from its header: what a tokenizer for it needs."""
    array, have = _open_array(path)
    return array.shape[1], have


def load_array(path: Path, size: int, channels: int, limit: int | None = None, spread: bool = False) -> np.ndarray:
    """A packed uint8 image array (N, H, W) or (N, H, W, 3), as scripts/prepare_pictures.py writes: read as
    it is (memory-mapped while checked), so a set of 200,000 pictures loads in seconds rather than minutes.
    `limit` rows: the first ones, or with `spread` rows spread evenly over the array (a packed set is in source
    order, so its first rows come from a few sources only); only those rows are read."""
    array, have = _open_array(path)
    if array.shape[1:3] != (size, size):
        raise InputError(f"{path}: holds {tuple(array.shape)}, not {size}x{size} images (N, {size}, {size}[, 3]): "
                         f"pass --image-size {array.shape[1]}, or an image folder")
    if have != channels:
        raise InputError(f"{path}: holds {'colour' if have == 3 else 'grey'} images but {channels} channel(s) "
                         f"were asked for: pass --channels {have}")
    if spread and limit is not None and limit < len(array):
        return np.array(array[np.unique(np.linspace(0, len(array) - 1, limit).round().astype(int))])
    return np.array(array[:limit])


def describe(source: str, split: str, count: int) -> str:
    """How records name the images `load_images` read: 'fashion-mnist test (10,000 images)'."""
    return f"{source}{' ' + split if source == FASHION else ''} ({count:,} images)"


def held_out_folder(source: str) -> Path | None:
    """The `test` folder beside a `train` folder (or train/images.npy's test/images.npy), where there is one."""
    p = Path(source)
    if p.suffix == ".npy" and p.parent.name == "train":
        held = p.parent.parent / "test" / p.name
        return held if held.is_file() else None
    held = p.parent / "test" if p.name == "train" else None
    return held if held is not None and held.is_dir() else None


def train_split_beside(source: str) -> str | None:
    """The training images of the data whose test split `source` is: Fashion-MNIST's train split, or the `train`
    folder beside a `test` folder (train/images.npy beside test/images.npy); None where there is none."""
    if source == FASHION:
        return FASHION
    p = Path(source)
    if p.suffix == ".npy" and p.parent.name == "test":
        train = p.parent.parent / "train" / p.name
        return str(train) if train.is_file() else None
    return str(p.parent / "train") if p.name == "test" and (p.parent / "train").is_dir() else None


def fashion_labels(split: str) -> np.ndarray:
    return data_io.load_fashion_mnist(split=split)[1]
