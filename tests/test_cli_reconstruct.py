"""`mvq reconstruct` and `Pipeline.reconstruction_sheet`: pictures beside their reconstructions, at a readable size."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tokenizer_cli import Pipeline
from tokenizer_cli.cli.app import app
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
        assert Image.open(sheet).size == (cols * (pair + 8) + 8, rows * (tile + 8) + 8), scale
        assert f"{tile} px tiles" in res.stderr
    res = run(runner, "reconstruct", image_dir, tmp_path / "sheet-1.png", "--model", model_dir)
    assert res.exit_code == 1 and "already exists" in res.stderr


def test_sheet_shows_the_picture_beside_its_reconstruction(model_dir, image_dir):
    pipe = Pipeline.from_pretrained(str(model_dir), device="cpu")
    picture = Image.open(image_dir / "a.png")
    sheet = np.asarray(pipe.reconstruction_sheet([picture], scale=2))
    recon = pipe.reconstruct([picture], output="numpy")[0]
    assert sheet.shape == (56 + 16, 2 * 56 + 2 + 16)
    assert np.array_equal(sheet[8:64:2, 8:64:2], np.asarray(picture))  # left: the picture, enlarged 2x
    assert np.array_equal(sheet[8:64:2, 66:122:2], recon)  # right: its reconstruction
    x = pipe.images_to_tensor([picture])
    assert np.array_equal(recon, pipe.decode(pipe.encode(to_uint8(x)), output="numpy")[0])
