"""Fuzzed inputs: every malformed image or token file gets a clean InputError, never another exception or a hang."""

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from tokenizer_cli.cli.app import app
from tokenizer_cli.data import InputError, load_image
from tokenizer_cli.tokenfile import load_tokens, validate_tokens

RNG = np.random.default_rng(1234)
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM"]


def valid_bytes(fmt: str) -> bytes:
    img = Image.fromarray(RNG.integers(0, 255, (20, 24, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (the data is a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def fuzz_cases():
    cases = []
    for fmt in FORMATS:
        good = valid_bytes(fmt)
        for cut in sorted(set(RNG.integers(0, len(good), 12).tolist()) | {0, 1, 8, 16}):
            cases.append((f"{fmt}-cut{cut}", good[:cut]))
        for i in range(12):
            bad = bytearray(good)
            for pos in RNG.integers(0, len(bad), 1 + i % 5):
                bad[pos] = RNG.integers(0, 256)
            cases.append((f"{fmt}-flip{i}", bytes(bad)))
    for i in range(20):
        cases.append((f"random{i}", RNG.integers(0, 256, int(RNG.integers(1, 4000)), dtype=np.uint8).tobytes()))
    for w, h in [(0, 0), (1, 0), (100_000, 100_000), (2**31 - 1, 1), (1, 2**31 - 1), (30_000, 30_000)]:
        cases.append((f"png-{w}x{h}", png_with_size(w, h)))
    return cases


CASES = fuzz_cases()


def test_fuzzed_images_fail_cleanly(tmp_path):
    assert len(CASES) > 200
    for name, blob in CASES:
        path = tmp_path / f"{name}.png"
        path.write_bytes(blob)
        t0 = time.perf_counter()
        try:
            arr = load_image(path, 28, 1)
        except InputError as err:
            assert str(path) in str(err) or path.name in str(err), (name, err)
        else:  # a few flipped bytes can still decode: then the result must be a proper image
            assert arr.shape == (1, 28, 28) and np.isfinite(arr).all() and np.abs(arr).max() <= 1, name
        assert time.perf_counter() - t0 < 10, f"{name} took too long"


def test_decompression_bomb_message(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_size(30_000, 30_000))
    with pytest.raises(InputError, match="decompression bomb"):
        load_image(path, 28, 1)


def token_cases():
    cases = {
        "nan": np.full((3, 2), np.nan),
        "inf": np.full((3, 2), np.inf),
        "negative": np.array([[0, -5], [1, 2]]),
        "overflow-u64": np.array([[0, 2**64 - 1]], dtype=np.uint64),
        "overflow-i64": np.array([[0, 2**63 - 1]], dtype=np.int64),
        "empty-rows": np.zeros((0, 2), dtype=np.int64),
        "empty-1d": np.zeros(0, dtype=np.int64),
        "scalar": np.array(3),
        "3d": np.zeros((2, 2, 2), dtype=np.int64),
        "bool": np.ones((2, 2), dtype=bool),
        "complex": np.ones((2, 2), dtype=complex),
        "strings": np.array([["a", "b"]]),
        "wrong-T": np.zeros((4, 7), dtype=np.int16),
        "float-ints": np.zeros((2, 2), dtype=np.float64),
    }
    return cases


def test_fuzzed_token_arrays_are_rejected(tmp_path):
    for name, arr in token_cases().items():
        path = tmp_path / f"{name}.npy"
        np.save(path, arr)
        tokens, _ = load_tokens(path)
        with pytest.raises(InputError):
            validate_tokens(tokens, 2, 240)


def test_fuzzed_token_files_are_rejected(tmp_path):
    good = io.BytesIO()
    np.save(good, np.zeros((3, 2), dtype=np.uint8))
    good = good.getvalue()
    blobs = [good[:cut] for cut in range(0, len(good) - 1, 7)]
    blobs += [RNG.integers(0, 256, 300, dtype=np.uint8).tobytes() for _ in range(10)]
    obj = io.BytesIO()
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    blobs.append(obj.getvalue())
    for i, blob in enumerate(blobs):
        path = tmp_path / f"t{i}.npy"
        path.write_bytes(blob)
        with pytest.raises(InputError):
            tokens, _ = load_tokens(path)
            validate_tokens(tokens, 2, 240)


def test_cli_encode_over_a_folder_of_fuzzed_files(runner, model_dir, tmp_path):
    folder = tmp_path / "fuzz"
    folder.mkdir()
    for name, blob in CASES[::5]:
        (folder / f"{name}.png").write_bytes(blob)
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(folder / "zz-good.png")
    res = runner.invoke(app, ["encode", str(folder), str(tmp_path / "t.npy"), "--model", str(model_dir),
                              "--device", "cpu", "--skip-bad"])
    assert res.exit_code == 0, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    res = runner.invoke(app, ["encode", str(folder), str(tmp_path / "u.npy"), "--model", str(model_dir),
                              "--device", "cpu"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert any(line.startswith("Error: ") for line in res.stderr.splitlines())
