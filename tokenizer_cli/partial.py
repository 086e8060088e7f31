"""What an interrupted `mvq encode` had done, kept beside its output so that `--resume` continues it.

A hidden folder `.OUT.npy.partial` beside OUT.npy holds `key.json` (what the rows depend on: the tokenizer,
the inputs in order and their files' sizes and times, the batch size, --skip-bad, --fit, the device type) and
one file per encoded batch, `rows-START-STOP.npz` (its rows, and what its pictures were for the mismatch
warning), each written atomically, so a kill at any moment leaves whole batches behind. A run resumed with
other inputs or options is refused; the folder goes once the outputs are published.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np

from .data import ImageSource, InputError
from .files import atomic_write, interrupts_deferred, read_small_json
from .images import PictureInfo
from .inference import EncodedBatch

KEY_FILE = "key.json"
BATCH_FILE = re.compile(r"^rows-(\d+)-(\d+)\.npz$")
KEY_NAMES = {"tokenizer_id": "model", "inputs": "inputs", "inputs_sha256": "inputs", "batch_size": "--batch-size",
             "skip_bad": "--skip-bad", "fit": "--fit", "device": "device"}  # what a user changed, in its words


def partial_folder(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def encode_key(tokenizer_id: str, sources: list[ImageSource], batch_size: int, skip_bad: bool, fit: str,
               device: str) -> dict:
    """What the rows of `mvq encode` depend on: a resumed run must match it in every field. Inputs count by
    their names in order and each file's size and modification time, so a file replaced meanwhile is noticed."""
    h = hashlib.sha256()
    for src in sources:
        h.update(src.label().encode("utf-8", "surrogateescape") + b"\0")
    for path in sorted({src.path for src in sources}):
        try:
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode("utf-8", "surrogateescape"))
        except OSError:
            h.update(f"{path}\0missing\0".encode("utf-8", "surrogateescape"))
    return {"tokenizer_id": tokenizer_id, "inputs": len(sources), "inputs_sha256": h.hexdigest(),
            "batch_size": batch_size, "skip_bad": skip_bad, "fit": fit, "device": device}


class PartialEncode:
    """The batches an `mvq encode` into `out` has finished, on disk; `done` inputs of `key["inputs"]`.

    resume=False starts over (the batches of an earlier run are removed: `discarded` counts their inputs);
    resume=True continues the earlier run, or raises InputError when there is none or it had another key."""

    def __init__(self, out: Path, key: dict, resume: bool) -> None:
        self.folder, self.key, self.total = partial_folder(out), key, key["inputs"]
        self.files: list[Path] = []
        self.done = 0
        if resume:
            self._load(out)
            return
        self.discarded = self._contiguous()[1] if self.folder.is_dir() else 0
        self.discard()
        self.folder.mkdir(parents=True)
        atomic_write(self.folder / KEY_FILE, lambda p: Path(p).write_text(json.dumps(key, indent=1) + "\n"))

    def _contiguous(self) -> tuple[list[Path], int]:
        """The batch files that follow each other from input 0, and the inputs they cover."""
        spans = {}
        for path in self.folder.iterdir():
            m = BATCH_FILE.match(path.name)
            if m:
                spans[int(m[1])] = (int(m[2]), path)
        done, chain = 0, []
        while done in spans and spans[done][0] > done:
            done, path = spans[done]
            chain.append(path)
        return chain, done

    def _load(self, out: Path) -> None:
        if not self.folder.is_dir():
            raise InputError(f"{out}: nothing to resume (no interrupted run left {self.folder}); run without --resume")
        try:
            stored = read_small_json(self.folder / KEY_FILE, 1 << 16)
        except (OSError, InputError) as err:
            raise InputError(f"{self.folder}: the interrupted run's state cannot be read ({err}); run without "
                             "--resume to start over") from None
        changed = sorted({KEY_NAMES.get(k, k) for k in self.key if not isinstance(stored, dict)
                          or stored.get(k) != self.key[k]})
        if changed:
            raise InputError(f"{out}: the interrupted run had other {', '.join(changed)}, so it cannot be resumed "
                             "(run the same command with --resume, or without it to start over)")
        self.files, self.done = self._contiguous()
        self.discarded = 0

    def save(self, batch: EncodedBatch) -> None:
        """Keep a batch that follows the ones kept so far (written whole or not at all)."""
        if batch.start != self.done:
            raise ValueError(f"batch starts at input {batch.start}, but {self.done} are done")
        stop = batch.start + len(batch.ok)
        path = self.folder / f"rows-{batch.start:09d}-{stop:09d}.npz"
        arrays = {"ok": batch.ok, "ids": batch.ids, "skipped": np.array(json.dumps(batch.skipped)),
                  "pictures": np.array(batch.pictures, dtype=np.int64).reshape(-1, len(PictureInfo._fields))}
        if batch.masks is not None:
            arrays["masks"] = batch.masks

        def write(tmp: str) -> None:
            with interrupts_deferred(), open(tmp, "wb") as f:  # a file object: np.savez would add .npz to the name
                np.savez(f, **arrays)

        atomic_write(path, write)
        self.files.append(path)
        self.done = stop

    def batches(self) -> Iterator[EncodedBatch]:
        """Every batch kept, in input order."""
        for path in self.files:
            start, stop = map(int, BATCH_FILE.match(path.name).groups())
            try:
                with np.load(path, allow_pickle=False) as z:
                    pictures = [PictureInfo(int(w), int(h), bool(c)) for w, h, c in z["pictures"]]
                    batch = EncodedBatch(start, z["ok"], z["ids"], z["masks"] if "masks" in z else None,
                                         json.loads(str(z["skipped"])), pictures)
                if len(batch.ok) != stop - start or not len(batch.ids) == len(pictures) == batch.ok.sum():
                    raise ValueError("its rows do not match its name")
            except Exception as err:  # any damage (truncated, not a zip, arrays missing) is one line
                raise InputError(f"{path}: a kept batch cannot be read ({err}); run without --resume to start over") \
                    from None
            yield batch

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def interrupted(self) -> str:
        """What an interruption now leaves behind, for the Ctrl-C line; with nothing encoded yet, nothing at all
        (the folder holding only the run's key goes)."""
        if self.done == 0:
            self.discard()
            return "no image was encoded yet, nothing is kept; no output was written"
        return (f"{self.done:,} of {self.total:,} images encoded are kept in {self.folder}; rerun the same command "
                "with --resume to continue; no output was written")
