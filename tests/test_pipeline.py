"""The Python API (`tokenizer_cli.Pipeline`) on real images and the shipped models, and its agreement with the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tokenizer_cli import Pipeline, Tokens
from tokenizer_cli.cli.app import app
from tokenizer_cli.data import InputError
from tokenizer_cli.hub import ModelNotFound

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "fashion"


@pytest.fixture(scope="module")
def shipped():
    return Pipeline.from_pretrained("mvq-fmnist-t2", device="cpu")


@pytest.fixture(scope="module")
def pictures():
    return [Image.open(p) for p in sorted(EXAMPLES.glob("*.png"))[:6]]


def test_encode_accepts_pil_uint8_arrays_and_float_tensors_alike(shipped, pictures):
    tokens = shipped.encode(pictures)
    assert isinstance(tokens, Tokens) and tokens.ids.shape == (6, 2) and tokens.ids.dtype == np.int64
    assert tokens.ids.max() < shipped.tokenizer.vocab_size
    arrays = np.stack([np.asarray(p.convert("L")) for p in pictures])  # (6, 28, 28) uint8
    assert np.array_equal(shipped.encode(arrays).ids, tokens.ids)
    floats = torch.from_numpy(arrays).float().div(127.5).sub(1)[:, None]  # (6, 1, 28, 28) in [-1, 1]
    assert np.array_equal(shipped.encode(floats).ids, tokens.ids)
    assert np.array_equal(shipped.encode(pictures[0]).ids, tokens.ids[:1])
    big = pictures[0].convert("RGB").resize((56, 56))  # other modes and sizes are converted like files are
    assert shipped.encode(big).ids.shape == (1, 2)
    with pytest.raises(InputError):
        shipped.encode(torch.zeros(2, 3, 28, 28))


def test_python_api_matches_the_cli(shipped, pictures, tmp_path):
    res = CliRunner().invoke(app, ["encode", str(EXAMPLES), str(tmp_path / "t.npy"), "--model", "mvq-fmnist-t2",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    cli_ids = np.load(tmp_path / "t.npy")
    api = shipped.encode([Image.open(p) for p in sorted(EXAMPLES.glob("*.png"))])
    assert np.array_equal(cli_ids, api.ids)
    if api.masks is not None:  # MVQ with sampled masks: the CLI stored the same masks beside the tokens
        assert np.array_equal(np.load(tmp_path / "t.masks.npy"), api.masks)
    images = shipped.decode(Tokens(api.ids[:3], None if api.masks is None else api.masks[:3]), output="numpy")
    res = CliRunner().invoke(app, ["decode", str(tmp_path / "t.npy"), str(tmp_path / "d"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    first = sorted(EXAMPLES.glob("*.png"))[0].stem
    assert np.array_equal(np.asarray(Image.open(tmp_path / "d" / f"{first}.png")), images[0])


def test_decode_and_sample_outputs(shipped):
    pil = shipped.decode(np.array([[1, 2], [3, 4]]))
    assert len(pil) == 2 and pil[0].size == (28, 28) and pil[0].mode == "L"
    tensor = shipped.decode(np.array([[1, 2]]), output="tensor")
    assert tensor.shape == (1, 1, 28, 28) and tensor.min() >= -1 and tensor.max() <= 1
    a = shipped.sample(4, seed=3, output="numpy")
    b = shipped.sample(4, seed=3, output="numpy")
    assert a.shape == (4, 28, 28) and np.array_equal(a, b)
    assert shipped.sample_tokens(4, seed=3).ids.shape == (4, 2)
    with pytest.raises(InputError, match="outside the vocabulary"):
        shipped.decode(np.array([[0, 10_000]]))


def test_sampled_mask_model_round_trips_through_save_pretrained(tmp_path, pictures):
    from conftest import tiny_prior, tiny_tokenizer

    tok = tiny_tokenizer("mvq")
    pipe = Pipeline(tok, tiny_prior(tok.vocab_size, 2))
    tokens = pipe.encode(pictures)
    assert tokens.masks is not None and tokens.masks.shape == tokens.ids.shape
    exact = pipe.decode(tokens, output="numpy")
    folder = pipe.save_pretrained(tmp_path / "saved")
    assert {p.name for p in folder.iterdir()} == {"config.json", "tokenizer.safetensors", "prior.safetensors", "README.md"}
    again = Pipeline.from_pretrained(folder, device="cpu")
    assert np.array_equal(again.decode(again.encode(pictures), output="numpy"), exact)
    drawn = [again.decode(tokens.ids, seed=s, output="numpy") for s in (1, 2)]
    assert not np.array_equal(drawn[0], drawn[1])
    samples = again.sample_tokens(5, seed=0)
    assert samples.masks.shape == (5, 2) and samples.masks.max() < tok.num_masks


def test_from_pretrained_names_what_it_tried(tmp_path):
    with pytest.raises(ModelNotFound, match="not a local folder"):
        Pipeline.from_pretrained("no-such-model")
    with pytest.raises(ModelNotFound):
        Pipeline.from_pretrained("owner/missing", revision="main")  # offline in tests: not in the cache


def test_python_api_fits_and_warns_like_the_cli(shipped):
    from tokenizer_cli import PictureWarning

    wide = Image.new("L", (84, 28), 0)
    wide.paste(255, (0, 0, 28, 28))  # a white square on the left of a 3:1 picture
    crop, pad = (shipped.images_to_tensor(wide, fit=fit)[0, 0] for fit in ("crop", "pad"))
    assert crop.max() < -0.9  # the centre third only: black
    assert pad[14, 2] > 0.9 and pad[14, 25] < -0.9  # the whole picture, the white square at its left
    colour = Image.new("RGB", (300, 200), (200, 30, 30))
    with pytest.warns(PictureWarning, match="the picture is colour but mvq-fmnist-t2 reads 28x28 grey, so it was read as grey"):
        shipped.encode(colour, fit="pad")
