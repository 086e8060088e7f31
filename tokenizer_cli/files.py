"""Writing files: atomically (a temp file beside the target, fsync, rename), PNGs and contact sheets, and the
check, before any work, that outputs can be written at all; reading small JSON files that may be hostile."""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .data import InputError


class OutputExistsError(InputError, FileExistsError):
    """An output file exists and overwriting was not allowed."""



@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C waits until the block is done: a library writer (np.savez's ZipFile) interrupted half-built prints
    a traceback from its destructor. The interrupt arrives as KeyboardInterrupt right after the block."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def read_small_json(path: str | os.PathLike[str], max_bytes: int) -> object:
    """Parse a JSON file of at most max_bytes; anything else is one InputError line naming the path, at once.

    The file is opened without blocking and checked to be a regular file before a byte is read, so a FIFO
    (which would block forever), a device (/dev/zero never ends) or a folder is refused; at most max_bytes + 1
    bytes are read whatever the file claims, and nesting too deep for the parser is refused too.
    FileNotFoundError is left to the caller, who knows what a missing file means.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket or other special file"
            raise InputError(f"{os.fsdecode(path)}: is {kind}, not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            blob = f.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(blob) > max_bytes:
        raise InputError(f"{os.fsdecode(path)}: larger than {max_bytes:,} bytes, too large to be what it should be")
    try:
        return json.loads(blob.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{os.fsdecode(path)}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{os.fsdecode(path)}: not valid JSON ({err.msg}, line {err.lineno})") from None
    except RecursionError:
        raise InputError(f"{os.fsdecode(path)}: JSON nested too deeply") from None


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file (or a folder's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], writer: Callable[[str], None]) -> None:
    """Call `writer(tmp)` on a temp file beside `path`, fsync it, then rename it over `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"  # same dir so os.replace is atomic; hidden
    try:
        writer(str(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())  # as readable as a file written in place (some writers make 0600)
        fsync_path(tmp)  # data on disk before the rename makes it visible
        os.replace(tmp, target)
    except BaseException as err:  # KeyboardInterrupt too: never leave a temp file behind
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(target)  # a failed write (disk full) names the file it was for
        raise


@contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """A hidden temp folder beside `folder` (inside it, when it exists) whose files appear in `folder` only
    when the block ends without an error: a full disk or Ctrl-C half way leaves `folder` as it was.

    A new folder is the temp folder renamed; into an existing one the files are moved one by one (a rename
    in the same file system needs no space), replacing files of the same name."""
    existed = folder.is_dir()
    home = folder if existed else folder.parent
    home.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=home))
    try:
        yield tmp
        if existed:
            for entry in sorted(tmp.iterdir()):
                os.replace(entry, folder / entry.name)
            tmp.rmdir()
        else:
            os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700; the folder is as readable as any other
            os.rename(tmp, folder)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and err.filename is not None and os.fsdecode(err.filename).startswith(str(tmp)):
            err.filename = str(folder) + os.fsdecode(err.filename)[len(str(tmp)):]  # the name the user asked for
        raise


@contextmanager
def output_claimed(out: Path, what: str = "mvq") -> Iterator[None]:
    """Hold an exclusive claim on writing `out` for the block: a lock file `.OUT.lock` beside it, flocked
    without waiting. A second process that asks for the same output while the first writes it is refused
    at once (InputError) instead of sharing its temp state. The lock file goes when the block ends; one
    left by a killed process holds no lock (the kernel drops it with the process) and is simply reused."""
    lock = out.parent / f".{out.name}.lock"
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o666)
        except PermissionError:  # a lock file another user left: flock needs only a read descriptor
            fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(f"{out}: another {what} is writing it now; wait for it to finish or choose "
                             "another output") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder before us removed the file we locked: lock the one on disk now
    try:
        yield
    finally:
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:  # ours still: one removed by hand may be another's now
                lock.unlink()
        except OSError:
            pass
        os.close(fd)


def _writable_dir(folder: Path, path: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        why = "read-only file system" if read_only else "permission denied"
        where = "" if folder == path else f" in {folder}"
        raise InputError(f"{path}: cannot write{where} ({why})")


def check_writable(*files: str | os.PathLike[str] | None, folders: Sequence[str | os.PathLike[str] | None] = ()) -> None:
    """Refuse, before any work, outputs that cannot be written: one InputError line naming the path.

    `files` are output files (replaced by a rename in their folder), `folders` output folders (files are
    written into them); None entries are skipped. Missing folders are fine when their nearest existing
    ancestor is a writable folder (they are created), so are existing outputs (the --overwrite check is
    the caller's).
    """
    for raw, is_folder in [(f, False) for f in files] + [(f, True) for f in folders]:
        if raw is None:
            continue
        path = Path(raw)
        if path.is_dir() and not is_folder:
            raise InputError(f"{path}: is a folder, not a file")
        if path.exists() and not path.is_dir() and is_folder:
            raise InputError(f"{path}: exists and is not a folder")
        ancestor = path if is_folder else path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            if os.path.lexists(ancestor):  # a dangling symlink or a loop
                raise InputError(f"{path}: {ancestor} is a broken link")
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise InputError(f"{path}: {ancestor} is a file, not a folder")
        _writable_dir(ancestor, path)


def save_png(array: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write a uint8 (H, W), (H, W, 1) or (H, W, 3) array as a PNG, atomically."""
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"save_png needs uint8 pixels, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    img = Image.fromarray(arr)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))  # format explicit: the temp name has no suffix


def make_grid(images: np.ndarray, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """Contact sheet of uint8 (N, H, W[, C]) images; tiles separated and framed by `pad` WHITE pixels.

    White because Fashion-MNIST tiles have black backgrounds, so white gaps keep them apart.
    """
    imgs = np.asarray(images)
    if imgs.ndim not in (3, 4) or imgs.shape[0] == 0:
        raise ValueError(f"make_grid needs a non-empty (N, H, W[, C]) array, got shape {imgs.shape}")
    n, h, w = imgs.shape[:3]
    ncols = max(1, min(ncols or math.ceil(math.sqrt(n)), n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, *imgs.shape[3:]), 255, dtype=np.uint8)
    for i, img in enumerate(imgs):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = img
    return grid


READABLE_TILE = 96  # pixels: the smallest tile side a person reads on a sheet without zooming
SHEET_WIDTH = 1024  # pixels a comparison sheet aims at: a screen's width


def sheet_scale(side: int, scale: int | None = None) -> int:
    """`scale`, or the smallest whole factor that makes `side`-pixel tiles at least READABLE_TILE wide."""
    return scale if scale is not None else max(1, math.ceil(READABLE_TILE / side))


def enlarge(images: np.ndarray, scale: int) -> np.ndarray:
    """uint8 (N, H, W[, C]) -> (N, H*scale, W*scale[, C]), each pixel a scale x scale block (nearest neighbour)."""
    return images if scale == 1 else np.repeat(np.repeat(images, scale, axis=1), scale, axis=2)


CAPTION_PX = 14  # the strip under each pair of a comparison sheet


def psnr(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """PSNR in dB of uint8 pictures against others (their mean squared error over all pixels); inf if equal."""
    mse = float(np.mean((original.astype(np.float64) - reconstruction.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / mse) if mse > 0 else math.inf


def psnr_text(original: np.ndarray, reconstruction: np.ndarray, prefix: str = "PSNR ") -> str:
    """`psnr` as the CLI prints it ("PSNR 23.12 dB", or "exact"); the sheets' captions drop the prefix."""
    value = psnr(original, reconstruction)
    return f"{prefix}{value:.2f} dB" if math.isfinite(value) else "exact"


def _drawable(text: str, font) -> str:
    """`text` as the font can draw it: Pillow's bitmap font (without FreeType) knows Latin-1 only."""
    return text.encode("latin-1", "replace").decode("latin-1") if isinstance(font, ImageFont.ImageFont) else text


def _fit_text(draw: ImageDraw.ImageDraw, font, text: str, width: int) -> str:
    """`text`, cut at its end with an ellipsis until it is at most `width` pixels wide."""
    text = text[: max(0, width)]  # no glyph is narrower than a pixel
    if draw.textlength(text, font=font) <= width:
        return text
    lo, hi = 0, len(text)  # the longest prefix that fits with the ellipsis: binary search
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if draw.textlength(text[:mid] + "...", font=font) <= width else (lo, mid - 1)
    return text[:lo] + "..." if lo else ""


def captioned(pair: np.ndarray, left: str, right: str) -> np.ndarray:
    """uint8 (H, W[, C]) with a white strip of CAPTION_PX below: `right` at its right end, `left` before it,
    each cut to fit (a tile too narrow for the text shows what fits)."""
    w = pair.shape[1]
    grey = pair.ndim == 2 or pair.shape[-1] == 1
    strip = Image.new("L" if grey else "RGB", (w, CAPTION_PX), "white")
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    ink = 60 if grey else (60, 60, 60)
    right = _fit_text(draw, font, _drawable(right, font), w - 2)
    right_w = int(math.ceil(draw.textlength(right, font=font)))
    draw.text((w - right_w - 1, 1), right, fill=ink, font=font)
    draw.text((1, 1), _fit_text(draw, font, _drawable(left, font), w - right_w - 8), fill=ink, font=font)
    band = np.asarray(strip, dtype=np.uint8).reshape(CAPTION_PX, w, *pair.shape[2:])
    return np.concatenate([pair, band], axis=0)


def comparison_sheet(originals: np.ndarray, reconstructions: np.ndarray, scale: int | None = None,
                     pairs_per_row: int | None = None, names: Sequence[str] | None = None) -> np.ndarray:
    """A sheet of pairs, original beside its reconstruction, tiles enlarged by `scale` (sheet_scale's default),
    each pair captioned with the picture's name (from `names`, where given) and the reconstruction's PSNR:
    uint8 (N, H, W[, C]) each -> one uint8 image, about SHEET_WIDTH wide unless `pairs_per_row` says."""
    if originals.shape != reconstructions.shape:
        raise ValueError(f"originals {originals.shape} and reconstructions {reconstructions.shape} differ in shape")
    if len(originals) == 0:
        raise ValueError("a comparison sheet needs at least one picture")
    if names is not None and len(names) != len(originals):
        raise ValueError(f"{len(names)} names for {len(originals)} pictures")
    k = sheet_scale(originals.shape[1], scale)
    left, right = enlarge(originals, k), enlarge(reconstructions, k)
    gap = np.full((*left.shape[:2], 2, *left.shape[3:]), 255, dtype=np.uint8)
    pairs = np.concatenate([left, gap, right], axis=2)  # (N, H*k, 2*W*k + 2[, C])
    names = names if names is not None else [""] * len(pairs)
    pairs = np.stack([captioned(pair, name, psnr_text(a, b, prefix=""))
                      for pair, name, a, b in zip(pairs, names, originals, reconstructions)])
    ncols = pairs_per_row or max(1, SHEET_WIDTH // (pairs.shape[2] + 8))
    return make_grid(pairs, ncols=ncols, pad=8)


def image_names(sources: Sequence[str]) -> list[str]:
    """PNG names for images made from `sources` (manifest labels: file paths, `path#row` of IDX files, any text),
    in order: the source's own name (boot.png -> boot.png, row 7 of an IDX file -> its-name-00007.png), and where
    two sources share one, `-2`, `-3`... after the later ones, in manifest order (compared without case, for
    file systems that ignore it). Characters outside [A-Za-z0-9._-] become '-'."""
    names, used = [], set()
    for label in sources:
        path, hash_, index = str(label).rpartition("#")
        row = hash_ and index.isdigit()
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path if row else str(label)).stem).strip("-.")[:100] or "image"
        if row:
            stem += f"-{int(index):05d}"
        name, k = f"{stem}.png", 1
        while name.casefold() in used:
            k += 1
            name = f"{stem}-{k}.png"
        used.add(name.casefold())
        names.append(name)
    return names


def publish_together(files: dict[Path, bytes], overwrite: bool, remove: list[Path] = ()) -> None:
    """Write every file to a temp beside it (fsynced), then, holding a lock on the folder, check that none
    exists (unless overwrite) and rename them all in order. Two concurrent writers cannot interleave: the
    second either waits and is refused, or (with overwrite) replaces the whole set."""
    folder = next(iter(files)).parent
    folder.mkdir(parents=True, exist_ok=True)
    temps: dict[Path, Path] = {}
    try:
        for target, blob in files.items():
            tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
            temps[target] = tmp
            with open(tmp, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
        lock = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not overwrite:
                for target in files:
                    if target.exists():
                        raise OutputExistsError(f"{target}: already exists (pass --overwrite to replace it)")
            for target, tmp in temps.items():
                os.replace(tmp, target)
            for extra in remove:
                extra.unlink(missing_ok=True)
        finally:
            os.close(lock)  # releases the lock
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
