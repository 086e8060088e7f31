"""Reading images: image files, folders of them, and Fashion-MNIST IDX files.

Pixel conversions (uint8 <-> float in [-1, 1], any PIL mode -> the model's input) live in images.py, writing
files (atomically, PNGs, grids) in files.py. Every bad input becomes an `InputError` naming the file.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .images import DEFAULT_FIT, PictureInfo, PictureTally, float_to_uint8, read_picture

if TYPE_CHECKING:  # torch is imported where it is used, so `mvq --help` starts without it
    import torch

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dims (N, H, W)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dim (N,)
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"


class InputError(Exception):
    """Bad user input; the message is one line naming the file and the reason."""


class BadArgument(InputError):
    """An argument out of its range or at odds with another: `name` is the parameter, so the CLI can name
    its option (--name) and Python callers the keyword."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name, self.message = name, message


# ---------------------------------------------------------------- IDX (MNIST / Fashion-MNIST)


def _open_maybe_gzip(path: str | os.PathLike[str]):
    """Open for reading bytes, through gzip when the file starts with the gzip magic."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"  # by content, not by name
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _idx_header(path: str | os.PathLike[str]) -> tuple[int, tuple[int, ...]]:
    """(magic, dims) of an IDX file; reads only the header, trusts nothing in it."""
    with _open_maybe_gzip(path) as f:
        head = f.read(4)
        if len(head) < 4:
            raise InputError(f"{path}: not an IDX file (too short)")
        (magic,) = struct.unpack(">I", head)
        ndim = magic & 0xFF
        raw = f.read(4 * ndim)
        if ndim == 0 or len(raw) < 4 * ndim:
            raise InputError(f"{path}: truncated IDX header")
        return magic, struct.unpack(f">{ndim}I", raw)


GZIP_MAX_RATIO = 1032  # deflate cannot expand more than this: bounds what a gzipped file can hold


def _checked_idx_header(path: str | os.PathLike[str], magic_wanted: int, what: str) -> tuple[tuple[int, ...], int]:
    """(dims, data bytes) of an IDX file whose header agrees with the file's size: checked before anything
    is allocated from it, so a short file claiming 2^31 rows is refused instead of trusted."""
    try:
        magic, dims = _idx_header(path)
        if magic != magic_wanted:
            raise InputError(f"{path}: not an IDX {what} file (magic 0x{magic:08x}, expected 0x{magic_wanted:08x})")
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, EOFError) as exc:  # unreadable, or a corrupt gzip stream
        raise InputError(f"{path}: cannot read IDX file ({exc})") from None
    header = 4 + 4 * len(dims)
    expected = math.prod(dims)
    shape = " x ".join(str(d) for d in dims)
    if not gz and header + expected != size:
        raise InputError(f"{path}: IDX header says {shape} = {expected:,} bytes of data but the file holds "
                         f"{max(0, size - header):,} (truncated or corrupt)")
    if gz and header + expected > size * GZIP_MAX_RATIO:
        raise InputError(f"{path}: IDX header says {shape} = {expected:,} bytes of data, more than a "
                         f"{size:,}-byte gzip file can hold (corrupt)")
    return dims, expected


def is_idx_file(path: str | os.PathLike[str]) -> bool:
    """True for an IDX image file (magic 0x00000803), plain or gzipped; says nothing of its size."""
    try:
        return Path(path).is_file() and _idx_header(path)[0] == IDX_IMAGES_MAGIC
    except (InputError, OSError, EOFError):  # gzip.BadGzipFile is an OSError
        return False


def _read_idx(path: str | os.PathLike[str], magic_wanted: int, what: str) -> np.ndarray:
    dims, expected = _checked_idx_header(path, magic_wanted, what)
    chunks, total = [], 0
    try:
        with _open_maybe_gzip(path) as f:
            f.read(4 + 4 * len(dims))
            while total <= expected:  # in chunks: memory follows the data really there, not the header
                chunk = f.read(min(1 << 24, expected + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
    except (OSError, EOFError) as exc:  # corrupt or truncated gzip stream
        raise InputError(f"{path}: cannot read IDX file ({exc})") from None
    if total != expected:
        raise InputError(f"{path}: IDX data has {total} bytes but the header says {expected} (truncated or corrupt)")
    return np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(dims)


def read_idx_images(path: str | os.PathLike[str]) -> np.ndarray:
    """uint8 (N, H, W) from an IDX image file (magic 0x00000803)."""
    return _read_idx(path, IDX_IMAGES_MAGIC, "image")


def read_idx_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """int64 (N,) from an IDX label file (magic 0x00000801)."""
    return _read_idx(path, IDX_LABELS_MAGIC, "label").astype(np.int64)


def load_fashion_mnist(root: str = FASHION_MNIST_ROOT, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) of one Fashion-MNIST split."""
    if split not in ("train", "test"):
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"

    def find(kind: str) -> Path:
        for name in (f"{prefix}-{kind}-ubyte.gz", f"{prefix}-{kind}-ubyte"):
            if (Path(root) / name).is_file():
                return Path(root) / name
        raise InputError(
            f"{root}: Fashion-MNIST {split} files not found "
            "(apt-get install dataset-fashion-mnist, or pass a folder of images)"
        )

    images, labels = read_idx_images(find("images-idx3")), read_idx_labels(find("labels-idx1"))
    if len(images) != len(labels):
        raise InputError(f"{root}: {len(images)} Fashion-MNIST images but {len(labels)} labels")
    return images, labels


@functools.lru_cache(maxsize=2)
def _cached_idx_images(path: str) -> np.ndarray:
    return read_idx_images(path)  # decoded once per worker, not once per row


# ---------------------------------------------------------------- sources


@dataclass(frozen=True, slots=True)
class ImageSource:
    """One image: a file (index None) or row `index` of an IDX file; `error` when it could not even be listed
    (an unreadable folder, an IDX file whose header lies), so `--skip-bad` lists it like a bad image."""

    path: str
    index: int | None = None
    error: str | None = None

    def label(self) -> str:
        return self.path if self.index is None else f"{self.path}#{self.index}"


def _idx_candidate(name: str) -> bool:
    return "idx" in name.lower() or "ubyte" in name.lower()  # only these names are opened to test the magic


def _expand_file(path: str) -> Iterator[ImageSource]:
    if is_idx_file(path):
        try:
            rows = _checked_idx_header(path, IDX_IMAGES_MAGIC, "image")[0][0]
        except InputError as err:
            yield ImageSource(path, error=str(err))
            return
        yield from (ImageSource(path, i) for i in range(rows))
    else:
        yield ImageSource(path)


def _list_folder(folder: str, seen: set[tuple[int, int]]) -> list[os.DirEntry] | ImageSource | None:
    """Sorted visible entries; None for a real folder already walked (a symlink loop); an error source
    naming the folder when it cannot be listed."""
    try:
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            return None
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as err:
        return ImageSource(folder, error=f"{folder}: cannot read this folder ({err.strerror or type(err).__name__})")


def _walk(root: str) -> Iterator[ImageSource]:
    """Depth-first in name order, with a stack instead of recursion (any depth), each real folder once (so
    symlink loops end); a folder that cannot be listed is an error source, not the end of the walk."""
    seen: set[tuple[int, int]] = set()
    stack: list[Iterator[os.DirEntry]] = []
    listed = _list_folder(root, seen)
    while True:
        if isinstance(listed, ImageSource):
            yield listed
        elif listed is not None:
            stack.append(iter(listed))
        listed = None
        if not stack:
            return
        e = next(stack[-1], None)
        if e is None:
            stack.pop()
            continue
        try:
            is_dir = e.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            listed = _list_folder(e.path, seen)
        elif Path(e.name).suffix.lower() in IMAGE_SUFFIXES:
            yield ImageSource(e.path)
        elif _idx_candidate(e.name) and is_idx_file(e.path):
            yield from _expand_file(e.path)


def iter_sources(inputs: Sequence[str | os.PathLike[str]]) -> Iterator[ImageSource]:
    """Lazily expand files, folders (recursive, sorted, images and IDX files only) and IDX files."""
    for item in inputs:
        path = os.fspath(item)
        if os.path.isdir(path):
            yield from _walk(path)
        elif os.path.isfile(path):
            yield from _expand_file(path)  # explicit file: tried whatever its suffix, so a non-image is reported
        elif os.path.lexists(path):
            raise InputError(f"{path}: a broken link or a symlink loop, not a file or folder")
        else:
            raise InputError(f"{path}: no such file or folder")


# ---------------------------------------------------------------- decoding


def read_image(path: str | os.PathLike[str], size: int, channels: int,
               fit: str = DEFAULT_FIT) -> tuple[np.ndarray, PictureInfo]:
    """Read an image file -> (float32 (channels, size, size) in [-1, 1], what the picture was); any failure
    is an InputError."""
    try:
        if os.path.getsize(path) == 0:
            raise InputError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb warning is an error here
            with Image.open(path) as img:
                full = img.size
                img.draft(None, (2 * size, 2 * size))  # JPEG: decode at 1/2..1/8 scale, never under twice the side
                img.load()  # inside the try: truncation surfaces here, not later
                drafted = img.size
                img = ImageOps.exif_transpose(img)
                array, info = read_picture(img, size, channels, fit)
                if drafted != full:  # the picture's own size, not the draft's, turned as EXIF turned it
                    turned = (info.width, info.height) != drafted
                    info = info._replace(width=full[turned], height=full[not turned])
                return array, info
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: image is too large (decompression bomb limit)") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: cannot identify image file (not an image or corrupt)") from None
    except Exception as exc:  # truncated data, broken chunks, unsupported modes...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot decode image ({reason})") from None


def load_image(path: str | os.PathLike[str], size: int, channels: int, fit: str = DEFAULT_FIT) -> np.ndarray:
    """Read an image file -> float32 (channels, size, size) in [-1, 1]; any failure is an InputError."""
    return read_image(path, size, channels, fit)[0]


def read_source(src: ImageSource, size: int, channels: int,
                fit: str = DEFAULT_FIT) -> tuple[np.ndarray, PictureInfo]:
    """Like `read_image`, for a file or one row of an IDX file."""
    if src.error is not None:
        raise InputError(src.error)
    if src.index is None:
        return read_image(src.path, size, channels, fit)
    rows = _cached_idx_images(src.path)
    if not 0 <= src.index < len(rows):
        raise InputError(f"{src.label()}: row out of range (file has {len(rows)} rows)")
    return read_picture(Image.fromarray(rows[src.index], "L"), size, channels, fit)


def load_source(src: ImageSource, size: int, channels: int, fit: str = DEFAULT_FIT) -> np.ndarray:
    """Like `load_image`, for a file or one row of an IDX file."""
    return read_source(src, size, channels, fit)[0]


def load_uint8(sources: Sequence[ImageSource], size: int, channels: int,
               on_image: Callable[[], None] | None = None, fit: str = DEFAULT_FIT,
               tally: PictureTally | None = None) -> np.ndarray:
    """Decode sources into one uint8 array: (N, H, W) grey or (N, H, W, 3) colour; `tally` counts what the
    pictures were."""
    out = np.empty((len(sources), size, size, channels), dtype=np.uint8)
    for i, src in enumerate(sources):
        arr, info = read_source(src, size, channels, fit)  # (C, H, W) in [-1, 1]
        out[i] = float_to_uint8(arr)
        if tally is not None:
            tally.add(info)
        if on_image is not None:
            on_image()
    return out[..., 0] if channels == 1 else out


LoadedItem = tuple[int, np.ndarray | None, str | None, PictureInfo | None]  # index, image, error, what it was


class SourceDataset:  # map-style: what torch.utils.data.DataLoader needs, without importing torch here
    """Map-style dataset over sources; yields (index, array or None, error or None, PictureInfo or None) so a bad
    file never kills a worker."""

    def __init__(self, sources: Sequence[ImageSource], size: int, channels: int, fit: str = DEFAULT_FIT) -> None:
        self.sources, self.size, self.channels, self.fit = list(sources), size, channels, fit

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> LoadedItem:
        try:
            array, info = read_source(self.sources[i], self.size, self.channels, self.fit)
            return i, array, None, info
        except InputError as exc:
            return i, None, str(exc), None


def collate_sources(
    batch: Sequence[LoadedItem],
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]], list[PictureInfo]]:
    """(indices of good items, their images (B, C, H, W), [(index, message)] of bad ones, what the good ones were).

    When every item is bad, indices and images are both empty tensors of shape (0,).
    """
    import torch

    good = [(i, a, info) for i, a, _, info in batch if a is not None]
    errors = [(i, e) for i, a, e, _ in batch if a is None and e is not None]
    if not good:
        return torch.empty(0, dtype=torch.long), torch.empty(0), errors, []
    indices = torch.tensor([i for i, _, _ in good], dtype=torch.long)
    images = torch.from_numpy(np.stack([a for _, a, _ in good]))
    return indices, images, errors, [info for _, _, info in good]
