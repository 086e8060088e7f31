"""scripts/half_weights.py and scripts/train_classifier.py on real files (tiny models, images written here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open

from tokenizer_cli.classifier import load_feature_net
from tokenizer_cli.hub import load_pipeline

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=300)


def test_half_weights_stores_float16_that_loads_and_decodes_the_same(model_with_prior):
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    before = load_pipeline(str(model_with_prior))
    ids = before.tokenizer.encode(x)
    want_images, want_tokens = before.tokenizer.decode(ids), before.prior.generate(4, seed=1)

    res = run_script("half_weights.py", str(model_with_prior))
    assert res.returncode == 0, res.stderr
    for name in ("tokenizer.safetensors", "prior.safetensors"):
        with safe_open(str(model_with_prior / name), "pt") as f:
            dtypes = {f.get_tensor(k).dtype for k in f.keys()}
        assert torch.float16 in dtypes and torch.float32 not in dtypes, (name, dtypes)

    after = load_pipeline(str(model_with_prior))
    assert next(after.tokenizer.parameters()).dtype == torch.float32  # cast back on load
    assert torch.allclose(after.tokenizer.decode(ids), want_images, atol=2e-2)
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
