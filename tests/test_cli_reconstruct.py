"""`mvq reconstruct` and `Pipeline.reconstruction_sheet`: pictures beside their reconstructions, at a readable size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tokenizer_cli import Pipeline
from tokenizer_cli.cli.app import app
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
    recon = originals.copy()
    recon[1] ^= 8  # the second pair off by a little: a finite PSNR
    assert psnr_text(originals[0], recon[0]) == "exact"
    assert psnr_text(originals[1], recon[1]) == "30.1 dB"  # 20 log10(255 / 8)
    named = comparison_sheet(originals, recon, scale=6, pairs_per_row=2, names=["apple", "a-much-longer-name"])
    plain = comparison_sheet(originals, recon, scale=6, pairs_per_row=2)
    tile = 16 * 6
    strip = slice(8 + tile, 8 + tile + CAPTION_PX)
    assert (named[strip] < 128).any()  # ink in the captions
    assert not np.array_equal(named[strip], plain[strip])  # the names are drawn
    assert np.array_equal(named[8 : 8 + tile], plain[8 : 8 + tile])  # the pictures themselves untouched
    first, second = named[strip, 8 : 8 + 2 * tile + 2], named[strip, 2 * tile + 18 : 4 * tile + 20]
    assert not np.array_equal(first, second)  # each pair its own caption
    with pytest.raises(ValueError, match="1 names for 2 pictures"):
        comparison_sheet(originals, recon, names=["one"])


def test_cli_sheet_captions_carry_the_file_names(runner, model_dir, image_dir, tmp_path):
    sheet = tmp_path / "sheet.png"
    assert run(runner, "reconstruct", image_dir / "a.png", sheet, "--model", model_dir, "--scale", "4").exit_code == 0
    img = np.asarray(Image.open(sheet))
    caption = img[8 + 112 : 8 + 112 + CAPTION_PX]
    assert (caption < 128).any()
