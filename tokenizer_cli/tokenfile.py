"""Token arrays on disk: `tokens.npy` ([N, T], smallest integer dtype) plus a `tokens.json` manifest.

MVQ with sampled masks adds `tokens.masks.npy` ([N, T] uint8/uint16, mask m in [0, M) of every token,
same rows and order). The files are written to temp files, then published together under a lock on their
folder (so of two concurrent writers one wins and the other is refused, and a reader never sees tokens
beside a manifest of another run), the manifest last; they never overwrite without permission. Tokens
read back are validated against the model, and the manifest names the tokenizer that wrote them (a hash
of its config and weights) so they are not decoded by another one by mistake.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tokenizer_cli.data import InputError
from tokenizer_cli.files import publish_together, read_small_json
from tokenizer_cli.version import __version__


MANIFEST_MAX_BYTES = 1 << 30  # tokens.json lists every row's source: ~100 bytes a row, millions of rows


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


def masks_path(npy_path: str | os.PathLike[str]) -> Path:
    """The sidecar mask file of a token file: `tokens.npy` -> `tokens.masks.npy`."""
    return Path(npy_path).with_suffix(".masks.npy")


def _version() -> str:
    try:
        return importlib.metadata.version("mvq")
    except importlib.metadata.PackageNotFoundError:  # running from a source checkout
        return __version__


def make_manifest(
    model_id: str,
    config_hash: str,
    tokens_per_image: int,
    vocab_size: int,
    sources: list[str],
    skipped: list[dict[str, str]],
    tokenizer_id: str | None = None,
    num_masks: int = 0,
    fit: str | None = None,
) -> dict[str, Any]:
    """The manifest written beside tokens.npy; row i of the tokens came from sources[i], fitted to the model's
    square by `fit` (None: not pictures, as sampled tokens)."""
    return {
        "model": model_id,
        "config_hash": config_hash,
        "tokenizer_id": tokenizer_id,
        "num_masks": int(num_masks),
        "tokens_per_image": int(tokens_per_image),
        "vocab_size": int(vocab_size),
        "dtype": smallest_dtype(vocab_size).name,
        "rows": len(sources),
        "fit": fit,
        "sources": list(sources),
        "skipped": [{"source": s["source"], "reason": s["reason"]} for s in skipped],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mvq_version": _version(),
    }


def save_tokens(path: str | os.PathLike[str], tokens: np.ndarray, manifest: dict[str, Any], overwrite: bool,
                masks: np.ndarray | None = None) -> None:
    """Write tokens (cast to the manifest's smallest dtype), their masks if any, and the manifest, together."""
    npy, meta, mask_file = Path(path), manifest_path(path), masks_path(path)
    if npy.suffix != ".npy":
        raise InputError(f"{npy}: token output must end in .npy")
    vocab, num_masks = int(manifest["vocab_size"]), int(manifest.get("num_masks") or 0)
    arr = validate_tokens(tokens, int(manifest["tokens_per_image"]), vocab)  # never write ids the model cannot read
    if manifest.get("rows", len(arr)) != len(arr):
        raise ValueError(f"manifest says {manifest['rows']} rows but there are {len(arr)} token rows")
    if (masks is None) != (num_masks == 0):
        raise ValueError("masks are written exactly when the manifest has num_masks > 0")
    files: dict[Path, bytes] = {npy: _npy_bytes(arr.astype(smallest_dtype(vocab)))}
    if masks is not None:
        files[mask_file] = _npy_bytes(validate_masks(masks, arr.shape, num_masks).astype(smallest_dtype(num_masks)))
    text = manifest_text({**manifest, "dtype": smallest_dtype(vocab).name, "rows": len(arr),
                          "masks_file": mask_file.name if masks is not None else None})
    files[meta] = text.encode("utf-8")  # last: the manifest is what makes the set complete
    stale = [] if masks is not None else [mask_file]  # masks of an older run must not sit beside these tokens
    publish_together(files, overwrite, stale)


def manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest as JSON, one key a line and each value compact: json's indented encoder is pure Python
    and held chunks of about twice the text's size for a long `sources` list (`mvq sample --n 300000`'s peak
    memory grew 91-96 MB over --n 1000 with it, 33 MB this way: `pytest -s tests/test_memory.py`)."""
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in manifest.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


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
    return tokens, read_manifest(p)


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest beside a token file (a JSON object), or None when there is none."""
    meta = manifest_path(path)
    if not meta.is_file():
        return None
    try:
        manifest = read_small_json(meta, MANIFEST_MAX_BYTES)
    except InputError as exc:  # not JSON, not UTF-8, nested too deeply, too large
        reason = str(exc).removeprefix(f"{meta}: ")
        raise InputError(f"{meta}: manifest: {reason}") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{meta}: manifest must be a JSON object")
    return manifest


def manifest_model(manifest: dict[str, Any] | None, path: str | os.PathLike[str]) -> str | None:
    """The model the manifest of token file `path` names (what decoding loads when no model is given), or None
    without a manifest."""
    if manifest is None:
        return None
    model = manifest.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InputError(f"{manifest_path(path)}: names no model (\"model\": {model!r}): pass --model")
    return model


def manifest_sources(manifest: dict[str, Any] | None, rows: int) -> list[str] | None:
    """The source of each token row, as the manifest lists them, or None when it lists none that fit `rows`."""
    sources = (manifest or {}).get("sources")
    if not isinstance(sources, list) or len(sources) != rows or not all(isinstance(s, str) for s in sources):
        return None
    return sources


def load_masks(path: str | os.PathLike[str], manifest: dict[str, Any] | None) -> np.ndarray | None:
    """The masks stored beside a token file (per its manifest), or None when there are none."""
    if not manifest or not manifest.get("masks_file"):
        return None
    name = manifest["masks_file"]
    if not isinstance(name, str) or Path(name).name != name:
        raise InputError(f"{manifest_path(path)}: masks_file must be a file name beside the tokens, got {name!r}")
    masks, _ = load_tokens(Path(path).parent / name) if (Path(path).parent / name).is_file() else (None, None)
    if masks is None:
        raise InputError(f"{Path(path).parent / name}: the manifest names this mask file but it is missing")
    return masks


def check_origin(tokens_file: str | os.PathLike[str], tokens: np.ndarray, manifest: dict[str, Any] | None, pipe,
                 force: bool = False) -> None:
    """Refuse tokens whose manifest names another tokenizer than `pipe`'s, or disagrees with the token rows."""
    if manifest is None:
        return
    rows = manifest.get("rows")
    if rows is not None and (not isinstance(rows, int) or getattr(tokens, "ndim", 0) < 1 or rows != len(tokens)):
        raise InputError(f"{tokens_file}: its manifest lists {rows} rows but the file holds {len(tokens)}: "
                         "the two files do not belong together")
    written_by = manifest.get("tokenizer_id")
    if written_by and written_by != pipe.tokenizer_id and not force:
        raise InputError(f"{tokens_file} was written by tokenizer {manifest.get('model')!r} ({written_by}), not by "
                         f"{pipe.source!r} ({pipe.tokenizer_id}): use --model {manifest.get('model')}, "
                         "or pass --force")


def read_token_file(path: str | os.PathLike[str], pipe, with_masks: bool = True,
                    force: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Token ids (N, T) int64 of a token file checked against `pipe`'s tokenizer (origin, shape, ids), and
    its masks (validated) where the model has masks, the file has them and with_masks asks for them."""
    tok = pipe.tokenizer
    tokens, manifest = load_tokens(path)
    check_origin(path, tokens, manifest, pipe, force)
    ids = validate_tokens(tokens, tok.tokens_per_image, tok.vocab_size)
    masks = load_masks(path, manifest) if tok.num_masks and with_masks else None
    return ids, None if masks is None else validate_masks(masks, ids.shape, tok.num_masks)


def validate_masks(masks: np.ndarray, shape: tuple[int, int], num_masks: int) -> np.ndarray:
    """Check masks against their tokens (same shape) and the model (ids in [0, num_masks)); int64 copy."""
    m = np.asarray(masks)
    if m.dtype == np.bool_ or not np.issubdtype(m.dtype, np.integer):
        raise InputError(f"masks must be integers, got {m.dtype}")
    if m.shape != tuple(shape):
        raise InputError(f"masks have shape {m.shape} but the tokens have {tuple(shape)}")
    bad = (m < 0) | (m >= num_masks)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(f"row {row} has mask {m[row, col]} outside the model's masks 0..{num_masks - 1}")
    return m.astype(np.int64)


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
