import numpy as np
import torch
from PIL import Image

from tokenizer_cli.cli.app import app
from tokenizer_cli.pipeline import load_pipeline


def test_explore_grid_shows_every_mask(runner, tmp_path):
    from conftest import tiny_tokenizer
    from tokenizer_cli.hub import save_pipeline

    model_dir = save_pipeline(tmp_path / "joint", tiny_tokenizer("mvq-joint"))
    out = tmp_path / "e.png"
    res = runner.invoke(app, ["explore", "--model", str(model_dir), "--code", "1", "--out", str(out),
                              "--blend", "0,2", "--steps", "4", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    grid = np.asarray(Image.open(out))
    cols, rows = 4, 3  # max(M=3 masks, 4 blend steps) columns; T=2 positions + 1 blend row
    assert grid.shape[:2] == (rows * 28 + (rows + 1) * 2, cols * 28 + (cols + 1) * 2)
    # column m of row 0 is the decoding of token k*M+m at position 0 (token 0 elsewhere)
    pipe = load_pipeline(str(model_dir))
    expect = pipe.tokenizer.decode(torch.tensor([[1 * 3 + 2, 0]]))[0, 0]
    tile = grid[2 : 2 + 28, 2 + 2 * 30 : 2 + 2 * 30 + 28].astype(float) / 127.5 - 1
    assert np.abs(tile - expect.numpy()).max() < 0.02


def test_explore_rejects_non_mvq_and_bad_codes(runner, tmp_path):
    from conftest import tiny_tokenizer
    from tokenizer_cli.hub import save_pipeline

    save_pipeline(tmp_path / "vq", tiny_tokenizer("vq"))
    res = runner.invoke(app, ["explore", "--model", str(tmp_path / "vq"), "--out", str(tmp_path / "e.png")])
    assert res.exit_code == 1 and "not an MVQ model" in res.stderr
    save_pipeline(tmp_path / "mvq", tiny_tokenizer("mvq"))
    res = runner.invoke(app, ["explore", "--model", str(tmp_path / "mvq"), "--code", "9", "--out", str(tmp_path / "e.png")])
    assert res.exit_code == 1 and "--code: must be in 0..3" in res.stderr
    res = runner.invoke(app, ["explore", "--model", str(tmp_path / "mvq"), "--blend", "0,7", "--out", str(tmp_path / "e.png")])
    assert res.exit_code == 1 and "--blend: mask ids must be in" in res.stderr


def test_explore_of_sampled_masks_adds_a_row_of_drawn_masks(runner, model_dir, tmp_path):
    out = tmp_path / "e.png"
    res = runner.invoke(app, ["explore", "--model", str(model_dir), "--code", "1", "--out", str(out),
                              "--draws", "5", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    grid = np.asarray(Image.open(out))
    cols, rows = 5, 3  # max(M=3 masks, 5 draws); T=2 positions + 1 row of draws
    assert grid.shape[:2] == (rows * 28 + (rows + 1) * 2, cols * 28 + (cols + 1) * 2)
    pipe = load_pipeline(str(model_dir))
    base = torch.zeros(1, 2, dtype=torch.long)
    for seed in (0, 4):  # the last row decodes token 0 everywhere under seed s
        expect = pipe.tokenizer.decode(base, generator=torch.Generator().manual_seed(seed))[0, 0]
        x = 2 + seed * 30
        tile = grid[2 + 2 * 30 : 2 + 2 * 30 + 28, x : x + 28].astype(float) / 127.5 - 1
        assert np.abs(tile - expect.numpy()).max() < 0.02


def test_explore_a_colour_model_in_colour(runner, tmp_path):
    from conftest import tiny_tokenizer
    from tokenizer_cli.hub import save_pipeline

    model_dir = save_pipeline(tmp_path / "colour", tiny_tokenizer("mvq", image_size=32, channels=3))
    out = tmp_path / "e.png"
    res = runner.invoke(app, ["explore", "--model", str(model_dir), "--code", "2", "--out", str(out),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    grid = np.asarray(Image.open(out))
    assert grid.ndim == 3 and grid.shape[2] == 3  # RGB tiles
    expect = load_pipeline(str(model_dir)).tokenizer.decode(torch.tensor([[2, 0]]), torch.tensor([[0, 0]]))[0]
    tile = grid[2 : 2 + 32, 2 : 2 + 32].astype(float) / 127.5 - 1  # row 0, column 0: code 2 under mask 0
    assert np.abs(tile - expect.permute(1, 2, 0).numpy()).max() < 0.02
