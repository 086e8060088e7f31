"""tokenizer_cli.fitting: the line that says pictures do not fit a model, the shipped model it names, and the shape
`mvq train tokenizer` takes from pictures; against the real shipped models and real picture files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tokenizer_cli.cli.app import app
from tokenizer_cli.fitting import mismatch_notice, shape_from_pictures, shipped_shapes
from tokenizer_cli.hub import read_config, shipped_root
from tokenizer_cli.images import PictureInfo, PictureTally


def tally(infos, size=28, fit="crop") -> PictureTally:
    t = PictureTally(size, fit)
    for info in infos:
        t.add(info)
    return t


def suggested(notice: str) -> tuple[int, int]:
    """(side, channels) of the shipped model a notice names after `--model`."""
    name = notice.rsplit("--model ", 1)[1].split()[0]
    cfg = read_config(shipped_root() / name).tokenizer
    return cfg.image_size, cfg.channels


def test_colour_photos_into_a_grey_model_name_a_colour_model():
    photos = tally([PictureInfo(1920, 1080, True)] * 9 + [PictureInfo(800, 600, False)])
    notice = mismatch_notice(photos, 1, "mvq-fmnist-t2")
    assert notice.startswith("9 of 10 pictures are colour but mvq-fmnist-t2 reads 28x28 grey")
    assert suggested(notice)[1] == 3  # whatever colour model is shipped
    assert max(s.side for s in shipped_shapes() if s.channels == 3) == suggested(notice)[0]  # the closest in size


def test_grey_pictures_into_a_colour_model_name_a_grey_model():
    notice = mismatch_notice(tally([PictureInfo(28, 28, False)] * 4, 64), 3, "fsq-pictures-t16")
    assert "all 4 pictures are grey" in notice and "all 4 pictures are smaller than 64x64" in notice
    assert suggested(notice) == (28, 1)


def test_pictures_that_fit_say_nothing():
    assert mismatch_notice(tally([PictureInfo(28, 28, False)] * 3), 1, "m") is None
    assert mismatch_notice(tally([PictureInfo(640, 480, True)] * 3, 64), 3, "m") is None  # shrinking is normal
    assert mismatch_notice(tally([]), 1, "m") is None
    # a minority of colour pictures in a grey set is not worth a line, nor half grey pictures in a colour one
    assert mismatch_notice(tally([PictureInfo(28, 28, True)] + [PictureInfo(28, 28, False)] * 2), 1, "m") is None
    assert mismatch_notice(tally([PictureInfo(90, 90, True), PictureInfo(90, 90, False)], 64), 3, "m") is None


def test_enlarged_pictures_are_counted_by_fit():
    wide = [PictureInfo(100, 20, True), PictureInfo(9, 12, True), PictureInfo(64, 64, True)]
    assert tally(wide, 64, "crop").upscaled == 2 and tally(wide, 64, "crop").smallest == (9, 12)
    assert tally(wide, 64, "pad").upscaled == 1  # pad scales the longer side: 100 px is shrunk
    notice = mismatch_notice(tally(wide, 64), 3, "m", remedy=None)
    assert notice == "2 of 3 pictures are smaller than 64x64 (the smallest 9x12), so enlarged and blurred"


def test_training_remedy_is_an_option():
    notice = mismatch_notice(tally([PictureInfo(64, 64, True)] * 2, 64), 1, remedy="options")
    assert notice.endswith("pass --channels 3 to train a colour tokenizer") and "--model" not in notice


def test_shape_from_pictures():
    assert shape_from_pictures([PictureInfo(28, 28, False)] * 5)[:2] == (28, 1)
    side, channels, why = shape_from_pictures([PictureInfo(1920, 1080, True)] * 3 + [PictureInfo(600, 400, False)])
    assert (side, channels) == (max(s.side for s in shipped_shapes()), 3)
    assert "3 of 4 looked at are colour" in why and "1080 px" in why
    assert shape_from_pictures([PictureInfo(64, 64, True), PictureInfo(64, 64, False)])[1] == 3  # a tie: colour


def colour_pictures(folder, n=5, size=(90, 60)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_a_colour_picture_into_a_grey_model_warns_once(runner, model_dir, tmp_path):
    res = runner.invoke(app, ["encode", str(colour_pictures(tmp_path / "pics")), str(tmp_path / "t.npy"),
                              "--model", str(model_dir), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, res.stderr
    assert f"all 5 pictures are colour but {model_dir} reads 28x28 grey, so they were read as grey" in warnings[0]
    assert "fits them better: --model" in warnings[0]
    assert json.loads((tmp_path / "t.json").read_text())["fit"] == "crop"
    grey = tmp_path / "grey"
    grey.mkdir()
    Image.new("L", (28, 28), 90).save(grey / "g.png")
    res = runner.invoke(app, ["encode", str(grey), str(tmp_path / "g.npy"), "--model", str(model_dir), "--device", "cpu"])
    assert res.exit_code == 0 and "warning" not in res.stderr


@pytest.mark.slow
def test_train_takes_the_shape_from_colour_pictures_and_the_round_trip_keeps_colour(runner, tmp_path):
    """A tiny colour tokenizer trained from a folder of red and blue pictures (no --channels, no --image-size)
    decodes a red picture red and a blue one blue: three channels all the way."""
    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(8):
        Image.new("RGB", (36, 30), (230, 20, 20) if i % 2 else (20, 20, 230)).save(pics / f"{i}.png")
    res = runner.invoke(app, ["train", "tokenizer", str(tmp_path / "m"), "--data", str(pics), "--steps", "60",
                              "--batch-size", "8", "--base-channels", "4", "--quantizer", "vq", "--tokens", "1",
                              "--lr", "1e-2", "--checkpoint-every", "0", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "chose --image-size 28 --channels 3: a 28x28 colour tokenizer" in res.stderr
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())["tokenizer"]
    assert (cfg["image_size"], cfg["channels"]) == (28, 3)
    args = ["--model", str(tmp_path / "m"), "--device", "cpu"]
    assert runner.invoke(app, ["encode", str(pics / "0.png"), str(pics / "1.png"), str(tmp_path / "t.npy"), *args]).exit_code == 0
    res = runner.invoke(app, ["decode", str(tmp_path / "t.npy"), str(tmp_path / "out"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    blue, red = (np.asarray(Image.open(tmp_path / "out" / f"{i}.png")).astype(int) for i in (0, 1))
    assert blue.shape == red.shape == (28, 28, 3)
    assert red[..., 0].mean() > red[..., 2].mean() + 60 and blue[..., 2].mean() > blue[..., 0].mean() + 60


def test_the_advice_follows_whatever_is_shipped(tmp_path, monkeypatch):
    """Ship a 32x32 colour model beside a grey one: colour photos into the grey one name it."""
    from conftest import tiny_tokenizer

    from tokenizer_cli import hub
    from tokenizer_cli.hub import save_pipeline

    weights = tmp_path / "weights"
    save_pipeline(weights / "grey-28", tiny_tokenizer())
    save_pipeline(weights / "pictures-32", tiny_tokenizer(image_size=32, channels=3))
    (weights / "broken").mkdir()
    (weights / "broken" / "config.json").write_text("{")  # left out, not fatal
    monkeypatch.setattr(hub, "shipped_root", lambda: weights)
    notice = mismatch_notice(tally([PictureInfo(640, 480, True)] * 3), 1, "grey-28")
    assert notice.endswith("pictures-32 (32x32 colour) fits them better: --model pictures-32")
    assert shape_from_pictures([PictureInfo(640, 480, True)])[:2] == (32, 3)  # the sides shipped: 28 and 32


@pytest.mark.slow
def test_train_takes_the_shape_of_a_packed_array(runner, tmp_path):
    """A packed .npy array is not a folder of pictures to look at: its shape gives --image-size and --channels."""
    packed = tmp_path / "images.npy"
    np.save(packed, np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))
    res = runner.invoke(app, ["train", "tokenizer", str(tmp_path / "m"), "--data", str(packed), "--steps", "2",
                              "--batch-size", "8", "--base-channels", "4", "--quantizer", "vq", "--tokens", "1",
                              "--checkpoint-every", "0", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "a packed array of 16x16 colour images; chose --image-size 16 --channels 3" in res.stderr
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())["tokenizer"]
    assert (cfg["image_size"], cfg["channels"]) == (16, 3)
