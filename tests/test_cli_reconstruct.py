"""`mvq reconstruct` and `Pipeline.reconstruction_sheet`: pictures beside their reconstructions, at a readable size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tokenizer_cli import Pipeline
from tokenizer_cli.cli.app import app
from tokenizer_cli.data import InputError
from tokenizer_cli.files import CAPTION_PX, comparison_sheet, psnr_text
from tokenizer_cli.images import to_uint8


def run(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def test_compare_sheet_size_follows_scale(runner, model_dir, image_dir, tmp_path):
    """4 pictures, 28 px tiles: pairs are 2 tiles + 2 px, 8 px apart and around; default scale 4 (>= 96 px)."""
    for scale, tile in ((None, 112), (1, 28), (3, 84)):
        sheet = tmp_path / f"sheet-{scale}.png"
        res = run(runner, "reconstruct", image_dir, sheet, "--model", model_dir, "--device", "cpu",
                  *(["--scale", scale] if scale else []))
        assert res.exit_code == 0, res.output
        pair, per_row = 2 * tile + 2, max(1, 1024 // (2 * tile + 2 + 8))
        cols, rows = min(4, per_row), -(-4 // min(4, per_row))
        assert Image.open(sheet).size == (cols * (pair + 8) + 8, rows * (tile + CAPTION_PX + 8) + 8), scale
        assert f"{tile} px tiles" in res.stderr
    res = run(runner, "reconstruct", image_dir, tmp_path / "sheet-1.png", "--model", model_dir)
    assert res.exit_code == 1 and "already exists" in res.stderr


def test_sheet_shows_the_picture_beside_its_reconstruction(model_dir, image_dir):
    pipe = Pipeline.from_pretrained(str(model_dir), device="cpu")
    picture = Image.open(image_dir / "a.png")
    sheet = np.asarray(pipe.reconstruction_sheet([picture], scale=2))
    recon = pipe.reconstruct([picture], output="numpy")[0]
    assert sheet.shape == (56 + CAPTION_PX + 16, 2 * 56 + 2 + 16)
    assert np.array_equal(sheet[8:64:2, 8:64:2], np.asarray(picture))  # left: the picture, enlarged 2x
    assert np.array_equal(sheet[8:64:2, 66:122:2], recon)  # right: its reconstruction
    x = pipe.images_to_tensor([picture])
    assert np.array_equal(recon, pipe.decode(pipe.encode(to_uint8(x)), output="numpy")[0])


def test_each_pair_is_captioned_with_its_name_and_psnr():
    rng = np.random.default_rng(0)
    originals = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    recon = originals ^ 8  # off by a little, alike: the same finite PSNR for both pairs
    assert psnr_text(originals[:1], originals[:1]) == "exact"
    assert psnr_text(originals[0], recon[0]) == psnr_text(originals[1], recon[1]) == "PSNR 30.07 dB"  # 20 log10(255 / 8)
    named = comparison_sheet(originals, recon, scale=6, pairs_per_row=2, names=["apple", "a-much-longer-name"])
    plain = comparison_sheet(originals, recon, scale=6, pairs_per_row=2)
    tile = 16 * 6
    strip = slice(8 + tile, 8 + tile + CAPTION_PX)
    first, second = slice(8, 8 + 2 * tile + 2), slice(2 * tile + 18, 4 * tile + 20)
    assert (plain[strip] < 128).any()  # the PSNR alone
    assert np.array_equal(plain[strip, first], plain[strip, second])  # same PSNR, no names: same captions
    assert not np.array_equal(named[strip, first], named[strip, second])  # each pair its own name
    assert np.array_equal(named[8 : 8 + tile], plain[8 : 8 + tile])  # the pictures themselves untouched
    with pytest.raises(ValueError, match="1 names for 2 pictures"):
        comparison_sheet(originals, recon, names=["one"])
    with pytest.raises(ValueError, match="at least one picture"):
        comparison_sheet(originals[:0], recon[:0])


def test_captions_of_odd_shapes_and_names():
    grey = np.zeros((1, 28, 28, 1), dtype=np.uint8)  # a channel axis of 1
    assert comparison_sheet(grey, grey, scale=1, names=["\u65e5\u672c \U0001f642" + "x" * 100_000]).ndim == 3
    dot = np.zeros((1, 1, 1, 3), dtype=np.uint8)  # a 1-pixel picture: whatever of the caption fits
    assert comparison_sheet(dot, dot ^ 1, scale=1, names=["n"]).shape == (1 + CAPTION_PX + 16, 4 + 16, 3)


def test_cli_sheet_captions_carry_the_file_names(runner, model_dir, image_dir, tmp_path):
    sheet = tmp_path / "sheet.png"
    assert run(runner, "reconstruct", image_dir / "a.png", sheet, "--model", model_dir, "--scale", "4").exit_code == 0
    pipe = Pipeline.from_pretrained(str(model_dir), device="cpu")
    picture = Image.open(image_dir / "a.png")
    assert np.array_equal(np.asarray(Image.open(sheet)), np.asarray(pipe.reconstruction_sheet([picture], scale=4,
                                                                                             names=["a"])))
    unnamed = np.asarray(pipe.reconstruction_sheet([picture], scale=4))
    assert not np.array_equal(np.asarray(Image.open(sheet)), unnamed)
    with pytest.raises(InputError, match="2 names for 1 pictures"):
        pipe.reconstruction_sheet([picture], names=["a", "b"])
