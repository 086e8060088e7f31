"""scripts/half_weights.py and scripts/train_classifier.py on real files (tiny models, images written here)."""

from __future__ import annotations

import pytest

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open

from tokenizer_cli.classifier import load_feature_net
from tokenizer_cli.pipeline import load_pipeline

pytestmark = pytest.mark.slow  # subprocesses and trainings: outside the fast suite

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=300)


def test_half_weights_halves_the_maskgit_prior_too(model_with_both_priors):
    res = run_script("half_weights.py", str(model_with_both_priors))
    assert res.returncode == 0, res.stderr
    with safe_open(str(model_with_both_priors / "prior-maskgit.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    pipe = load_pipeline(str(model_with_both_priors))
    assert pipe.maskgit_prior.generate(3, seed=0).shape == (3, 2)


def test_half_weights_stores_float16_that_loads_and_decodes_the_same(model_with_prior):
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    before = load_pipeline(str(model_with_prior))
    ids, masks = before.tokenizer.encode(x, with_masks=True)
    want_images, want_tokens = before.tokenizer.decode(ids, masks), before.prior.generate(4, seed=1)

    res = run_script("half_weights.py", str(model_with_prior))
    assert res.returncode == 0, res.stderr
    for name in ("tokenizer.safetensors", "prior.safetensors"):
        with safe_open(str(model_with_prior / name), "pt") as f:
            dtypes = {f.get_tensor(k).dtype for k in f.keys()}
        assert torch.float16 in dtypes and torch.float32 not in dtypes, (name, dtypes)

    after = load_pipeline(str(model_with_prior))
    assert next(after.tokenizer.parameters()).dtype == torch.float32  # cast back on load
    assert torch.allclose(after.tokenizer.decode(ids, masks), want_images, atol=2e-2)
    assert (after.prior.generate(4, seed=1) == want_tokens).float().mean() > 0.5


def test_half_weights_without_folders_prints_usage():
    res = run_script("half_weights.py")
    assert res.returncode == 2 and "Usage" in res.stderr


def test_train_classifier_on_a_prepared_colour_folder(tmp_path):
    """Two classes (reddish / bluish pictures) in the layout prepare_openclipart.py writes."""
    root = tmp_path / "set"
    rng = np.random.default_rng(0)
    outputs = {}
    for split, n in (("train", 40), ("test", 10)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            cls = ("animals", "food")[i % 2]
            img = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
            img[..., 0 if cls == "animals" else 2] += 170
            Image.fromarray(img).save(root / split / f"{cls}__{i:03d}.png")
            outputs[f"{split}/{cls}__{i:03d}.png"] = f"{cls}/pic{i}.png"
    (root / "manifest.json").write_text(json.dumps({"outputs": outputs}))
    out = tmp_path / "fd-net"
    res = run_script("train_classifier.py", "--data", str(root), "--image-size", "16", "--out", str(out),
                     "--width", "4", "--epochs", "3", "--batch-size", "8", "--flip")
    assert res.returncode == 0, res.stderr
    net, info = load_feature_net(str(out))
    assert info["classes"] == ["animals", "food"] and info["config"]["channels"] == 3
    assert info["test_images"] == 10 and info["test_accuracy"] >= 0.9, info
    assert info["fd_train_vs_test"] >= 0 and net.features(torch.zeros(2, 3, 16, 16)).shape == (2, 16)
    assert "2 classes" in (out / "README.md").read_text()


def test_prepare_openclipart_squares_splits_dedupes_and_records_sources(tmp_path):
    src = tmp_path / "png"
    for cat in ("animals", "food/fruit"):
        (src / cat).mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgba = np.zeros((300, 120, 4), dtype=np.uint8)  # transparent, with an opaque red bar in the middle
    rgba[100:200, 20:100] = (255, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(src / "animals" / "bar.png")
    for i in range(30):  # enough files that both splits get some
        Image.fromarray(rng.integers(0, 200, (40 + i, 50, 3), dtype=np.uint8)).save(src / "food/fruit" / f"f{i}.png")
    (src / "animals" / "copy.png").write_bytes((src / "animals" / "bar.png").read_bytes())  # exact duplicate
    Image.new("RGB", (20, 20), "white").save(src / "animals" / "blank.png")
    (src / "animals" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.new("RGB", (6000, 4000), "white").save(src / "animals" / "poster.png")  # large canvas, white: blank

    out = tmp_path / "out"
    res = run_script("prepare_openclipart.py", "--source", str(src), "--out", str(out), "--size", "16")
    assert res.returncode == 0, res.stderr
    info = json.loads((out / "manifest.json").read_text())
    assert (info["duplicate"], info["blank"], info["unreadable"]) == (1, 2, 1)
    assert info["train"] + info["test"] == 31 and info["train"] > 0 and info["test"] > 0
    assert set(info["outputs"].values()) == {"animals/bar.png"} | {f"food/fruit/f{i}.png" for i in range(30)}
    for rel_out in info["outputs"]:
        with Image.open(out / rel_out) as img:
            assert img.size == (16, 16) and img.mode == "RGB"
    bar_out = next(k for k, v in info["outputs"].items() if v == "animals/bar.png")
    bar = np.asarray(Image.open(out / bar_out))
    assert bar[8, 8, 0] > 200 and bar[8, 8, 1] < 60  # cropped to the red bar: red fills the middle
    assert bar[8, 0].min() > 200  # the taller-than-wide bar is padded to a square with white, not black

    res = run_script("prepare_openclipart.py", "--source", str(src), "--out", str(out), "--size", "16")
    assert res.returncode != 0 and "--overwrite" in res.stderr


def test_pictures_figures_draws_a_row_per_model_of_the_test_pictures(model_with_prior, tmp_path):
    """scripts/pictures_figures.py on a fake picture set (28x28 grey, as the tiny model reads)."""
    data = tmp_path / "set"
    (data / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(data / "test" / "images.npy", rng.integers(0, 256, (30, 28, 28), dtype=np.uint8))
    np.save(data / "test" / "labels.npy", np.arange(30) % 7)
    out = tmp_path / "figs"
    res = subprocess.run([sys.executable, str(SCRIPTS / "pictures_figures.py"), "--data", str(data), "--out", str(out),
                          "--n", "9", f"tiny={model_with_prior}", f"again={model_with_prior}"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("PSNR") == 2
    recon, samples = Image.open(out / "reconstructions.png"), Image.open(out / "samples.png")
    width = 9 * 30 + 2  # 9 tiles of 28 px, 2 px apart and around
    assert recon.size == (width, 3 * (28 + 4 + 14))  # originals, then a row per model, each captioned
    assert samples.size == (width, 2 * (28 + 4 + 14))
    rows = np.asarray(recon)
    assert np.array_equal(rows[46:78], rows[92:124])  # the same model twice: the same row
