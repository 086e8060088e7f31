"""Token arrays on disk: `tokens.npy` ([N, T], smallest integer dtype) plus a `tokens.json` manifest.

Both are written through temp files and renamed, and never overwrite without permission; tokens read
back are validated against the model before anything runs.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tokenizer_cli.data import InputError, atomic_write


class OutputExistsError(InputError, FileExistsError):
    """An output file exists and overwriting was not allowed."""


def smallest_dtype(vocab_size: int) -> np.dtype:
    """Smallest integer dtype holding ids 0..vocab_size-1 (unsigned where it fits)."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    for dt in (np.uint8, np.uint16):
        if vocab_size - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int32) if vocab_size - 1 <= np.iinfo(np.int32).max else np.dtype(np.int64)


def manifest_path(npy_path: str | os.PathLike[str]) -> Path:
    """The sidecar manifest of a token file: same stem, `.json`."""
    return Path(npy_path).with_suffix(".json")


def _version() -> str:
    try:
        return importlib.metadata.version("mvq")
    except importlib.metadata.PackageNotFoundError:  # running from a source checkout
        import tokenizer_cli

        return str(getattr(tokenizer_cli, "__version__", "unknown"))


def make_manifest(
    model_id: str,
    config_hash: str,
    tokens_per_image: int,
    vocab_size: int,
    sources: list[str],
    skipped: list[dict[str, str]],
) -> dict[str, Any]:
    """The manifest written beside tokens.npy; row i of the tokens came from sources[i]."""
    return {
        "model": model_id,
        "config_hash": config_hash,
        "tokens_per_image": int(tokens_per_image),
        "vocab_size": int(vocab_size),
        "dtype": smallest_dtype(vocab_size).name,
        "rows": len(sources),
        "sources": list(sources),
        "skipped": [{"source": s["source"], "reason": s["reason"]} for s in skipped],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mvq_version": _version(),
    }


def save_tokens(path: str | os.PathLike[str], tokens: np.ndarray, manifest: dict[str, Any], overwrite: bool) -> None:
    """Write tokens (cast to the manifest's smallest dtype) and the manifest, each atomically."""
    npy, meta = Path(path), manifest_path(path)
    if npy.suffix != ".npy":
        raise InputError(f"{npy}: token output must end in .npy")
    for p in (npy, meta):
        if p.exists() and not overwrite:
            raise OutputExistsError(f"{p}: already exists (pass --overwrite to replace it)")
    vocab = int(manifest["vocab_size"])
    arr = validate_tokens(tokens, int(manifest["tokens_per_image"]), vocab)  # never write ids the model cannot read
    if manifest.get("rows", len(arr)) != len(arr):
        raise ValueError(f"manifest says {manifest['rows']} rows but there are {len(arr)} token rows")
    arr = arr.astype(smallest_dtype(vocab))
    text = json.dumps({**manifest, "dtype": arr.dtype.name, "rows": len(arr)}, indent=2) + "\n"  # fails before any write

    def write_npy(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save on a name would append ".npy" to the temp
            np.save(f, arr, allow_pickle=False)

    def write_manifest(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")
        atomic_write(npy, write_npy)  # npy renamed only once the json temp is complete; json renamed right after

    atomic_write(meta, write_manifest)


def load_tokens(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any] | None]:
    """(tokens as stored, manifest or None); never unpickles."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    with open(p, "rb") as f:
        magic = f.read(6)
    if magic[:4] == b"PK\x03\x04":
        raise InputError(f"{p}: is an .npz archive, expected a .npy token file")
    if magic != b"\x93NUMPY":  # checked first: numpy reports any non-npy file as "pickled data"
        raise InputError(f"{p}: not a .npy file")
    try:
        tokens = np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object arrays" in str(exc).lower():
            raise InputError(f"{p}: holds pickled Python objects, not an integer token array (refused)") from None
        raise InputError(f"{p}: not a valid .npy file ({exc})") from None
    except Exception as exc:  # truncated or garbled header/data
        raise InputError(f"{p}: not a valid .npy file ({exc or type(exc).__name__})") from None
    meta = manifest_path(p)
    if not meta.is_file():
        return tokens, None
    try:
        manifest = json.loads(meta.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{meta}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{meta}: manifest must be a JSON object")
    return tokens, manifest


def validate_tokens(tokens: np.ndarray, tokens_per_image: int, vocab_size: int) -> np.ndarray:
    """Check dtype, shape and id range against the model; return an int64 copy or raise InputError."""
    t = np.asarray(tokens)
    if t.dtype == np.bool_ or not np.issubdtype(t.dtype, np.integer):
        raise InputError(f"tokens must be integers, got {t.dtype}")
    if t.ndim != 2:
        raise InputError(f"tokens must be a 2-D array [images, {tokens_per_image}], got shape {t.shape}")
    if t.shape[0] == 0:
        raise InputError("tokens have no rows")
    if t.shape[1] != tokens_per_image:
        raise InputError(f"tokens have {t.shape[1]} per row but the model uses {tokens_per_image}")
    bad = (t < 0) | (t >= vocab_size)  # compared before the int64 cast, so huge uint64 values cannot wrap
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(
            f"row {row} has token {t[row, col]} outside the vocabulary 0..{vocab_size - 1}"
        )
    return t.astype(np.int64)
