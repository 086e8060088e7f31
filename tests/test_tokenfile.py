"""tokenizer_cli.tokenfile: saving, loading and validating token arrays."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tokenizer_cli.data import InputError
from tokenizer_cli.tokenfile import (
    load_tokens,
    make_manifest,
    manifest_path,
    save_tokens,
    smallest_dtype,
    validate_tokens,
)


def manifest(rows: int, vocab: int = 240, t: int = 2) -> dict:
    return make_manifest("mvq-fmnist-t2", "abc123", t, vocab, [f"img{i}.png" for i in range(rows)], [])


def test_smallest_dtype():
    assert smallest_dtype(1) == np.uint8 and smallest_dtype(256) == np.uint8
    assert smallest_dtype(257) == np.uint16 and smallest_dtype(65536) == np.uint16
    assert smallest_dtype(65537) == np.int32 and smallest_dtype(2**31) == np.int32
    assert smallest_dtype(2**31 + 1) == np.int64
    with pytest.raises(ValueError):
        smallest_dtype(0)


def test_make_manifest_keys():
    m = make_manifest("m", "h", 2, 240, ["a.png"], [{"source": "bad.png", "reason": "not an image"}])
    assert set(m) == {
        "model", "config_hash", "tokens_per_image", "vocab_size", "dtype", "rows",
        "sources", "skipped", "created", "mvq_version", "tokenizer_id", "num_masks", "fit",
    }
    assert m["dtype"] == "uint8" and m["rows"] == 1 and m["skipped"][0]["reason"] == "not an image"
    json.dumps(m)  # serialisable as is


@pytest.mark.parametrize("vocab,dtype", [(240, np.uint8), (1000, np.uint16), (70000, np.int32)])
def test_round_trip(tmp_path, vocab, dtype):
    tokens = np.random.default_rng(0).integers(0, vocab, (5, 2))
    path = tmp_path / "out" / "tokens.npy"
    save_tokens(path, tokens, manifest(5, vocab), overwrite=False)
    assert sorted(os.listdir(tmp_path / "out")) == ["tokens.json", "tokens.npy"]  # no temp files left
    loaded, m = load_tokens(path)
    assert loaded.dtype == dtype and np.array_equal(loaded, tokens)
    assert m is not None and m["rows"] == 5 and m["dtype"] == np.dtype(dtype).name and m["vocab_size"] == vocab
    assert m["sources"] == [f"img{i}.png" for i in range(5)]
    assert manifest_path(path) == tmp_path / "out" / "tokens.json"


def test_load_without_manifest(tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((2, 2), np.int64))
    tokens, m = load_tokens(tmp_path / "t.npy")
    assert m is None and tokens.shape == (2, 2)


def test_refuses_overwrite(tmp_path):
    path = tmp_path / "tokens.npy"
    save_tokens(path, np.zeros((1, 2), np.int64), manifest(1), overwrite=False)
    with pytest.raises(InputError, match="--overwrite") as info:
        save_tokens(path, np.ones((1, 2), np.int64), manifest(1), overwrite=False)
    assert isinstance(info.value, FileExistsError)
    assert np.array_equal(load_tokens(path)[0], [[0, 0]])
    path.unlink()  # the manifest alone also blocks
    with pytest.raises(FileExistsError, match="tokens.json"):
        save_tokens(path, np.ones((1, 2), np.int64), manifest(1), overwrite=False)
    save_tokens(path, np.ones((3, 2), np.int64), manifest(3), overwrite=True)
    tokens, m = load_tokens(path)
    assert tokens.tolist() == [[1, 1]] * 3 and m["rows"] == 3


def test_save_rejects_bad_input(tmp_path):
    with pytest.raises(InputError, match=".npy"):
        save_tokens(tmp_path / "tokens.bin", np.zeros((1, 2), np.int64), manifest(1), overwrite=False)
    with pytest.raises(InputError, match="row 0 has token 240"):
        save_tokens(tmp_path / "t.npy", np.full((1, 2), 240), manifest(1), overwrite=False)
    with pytest.raises(ValueError, match="rows"):
        save_tokens(tmp_path / "t.npy", np.zeros((2, 2), np.int64), manifest(1), overwrite=False)
    bad = {**manifest(1), "oops": object()}  # not JSON: fails before anything is written
    with pytest.raises(TypeError):
        save_tokens(tmp_path / "t.npy", np.zeros((1, 2), np.int64), bad, overwrite=False)
    assert os.listdir(tmp_path) == []


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(InputError, match="missing.npy: no such file"):
        load_tokens(tmp_path / "missing.npy")
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(InputError, match="text.npy: not a .npy file"):
        load_tokens(tmp_path / "text.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="obj.npy: holds pickled"):
        load_tokens(tmp_path / "obj.npy")
    np.save(tmp_path / "cut.npy", np.zeros((100, 2), np.int64))
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.npy"):
        load_tokens(tmp_path / "cut.npy")
    np.savez(tmp_path / "arch.npy", a=np.zeros(2))  # savez appends .npz
    os.replace(tmp_path / "arch.npy.npz", tmp_path / "arch.npy")
    with pytest.raises(InputError, match="npz"):
        load_tokens(tmp_path / "arch.npy")
    np.save(tmp_path / "ok.npy", np.zeros((1, 2), np.int64))
    (tmp_path / "ok.json").write_text("{not json")
    with pytest.raises(InputError, match="ok.json: manifest: not valid JSON"):
        load_tokens(tmp_path / "ok.npy")
    (tmp_path / "ok.json").write_text("[" * 100_000 + "]" * 100_000)  # deeper than the parser's recursion
    with pytest.raises(InputError, match="ok.json: manifest: JSON nested too deeply"):
        load_tokens(tmp_path / "ok.npy")


@pytest.mark.parametrize(
    "tokens,message",
    [
        (np.zeros((2, 2), np.float32), "tokens must be integers, got float32"),
        (np.array([[0.0, np.nan]]), "tokens must be integers, got float64"),
        (np.zeros((2, 2), bool), "tokens must be integers, got bool"),
        (np.zeros((2, 2), complex), "tokens must be integers, got complex128"),
        (np.array([[0, 1]], dtype=object), "tokens must be integers, got object"),
        (np.zeros(2, np.int64), r"2-D array .* got shape \(2,\)"),
        (np.zeros((1, 2, 2), np.int64), r"2-D array .* got shape \(1, 2, 2\)"),
        (np.zeros((0, 2), np.int64), "no rows"),
        (np.zeros((3, 5), np.int64), "tokens have 5 per row but the model uses 2"),
        (np.array([[0, 1], [2, 3], [4, 5], [6, -1]]), "row 3 has token -1 outside the vocabulary 0..239"),
        (np.array([[0, 1], [2, 999], [4, 240]]), "row 1 has token 999 outside the vocabulary 0..239"),
        (np.array([[0, 2**64 - 1]], dtype=np.uint64), "row 0 has token 18446744073709551615 outside"),
    ],
)
def test_validate_tokens_failures(tokens, message):
    with pytest.raises(InputError, match=message):
        validate_tokens(tokens, 2, 240)


def test_validate_tokens_ok():
    out = validate_tokens(np.array([[0, 239], [5, 6]], np.uint8), 2, 240)
    assert out.dtype == np.int64 and out.tolist() == [[0, 239], [5, 6]]


def test_manifest_round_trips_odd_file_names_one_key_a_line(tmp_path):
    # a file name that is not valid UTF-8 reaches Python as surrogate escapes; it must still be written
    odd = ["café.png", "日本.png", "bad-\udcff.png", 'quote"and\\slash.png']
    m = make_manifest("m", "h", 2, 16, odd, [{"source": "x\ny.png", "reason": "not an image"}])
    save_tokens(tmp_path / "t.npy", np.zeros((4, 2), dtype=np.int64), m, overwrite=False)
    text = manifest_path(tmp_path / "t.npy").read_text(encoding="utf-8")
    assert len(text.splitlines()) == len(m) + 3  # "{", a line per key (masks_file added), "}"
    _, back = load_tokens(tmp_path / "t.npy")
    assert back["sources"] == odd and back["skipped"][0]["source"] == "x\ny.png"
