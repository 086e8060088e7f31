import json

import numpy as np
import pytest
import torch
from PIL import Image

from tokenizer_cli.checkpoint import latest_checkpoint
from tokenizer_cli.cli.app import app
from tokenizer_cli.config import QuantizerConfig, TokenizerConfig
from tokenizer_cli.models import Tokenizer
from tokenizer_cli.pipeline import load_pipeline
from tokenizer_cli.train import TrainConfig, train_tokenizer


def blobs(n=64, size=16, seed=0):
    """Simple real-looking images: a bright disc at a random place on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n):
        cy, cx = rng.integers(3, size - 3, 2)
        out[i][(yy - cy) ** 2 + (xx - cx) ** 2 < 9] = 255
    return out


def small_model(kind="mvq"):
    torch.manual_seed(0)
    q = QuantizerConfig(kind=kind, dim=4, num_codes=8, mask_bits=2, levels=[4, 4])
    return Tokenizer(TokenizerConfig(image_size=16, channels=1, tokens=2, base_channels=4, quantizer=q))


@pytest.mark.parametrize("kind", ["vq", "fsq", "mvq"])
def test_training_reduces_reconstruction_error(kind, tmp_path):
    images = blobs()
    model = small_model(kind)
    losses = []
    cfg = TrainConfig(steps=60, batch_size=32, lr=3e-3, warmup=5, checkpoint_every=0)
    train_tokenizer(model, images, cfg, tmp_path / "run", torch.device("cpu"),
                    on_step=lambda s, st: losses.append(st["mse"]))
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    images = blobs()
    cfg = TrainConfig(steps=8, batch_size=16, warmup=2, checkpoint_every=4)
    straight = small_model()
    train_tokenizer(straight, images, cfg, tmp_path / "a", torch.device("cpu"))

    class Stop(Exception):
        pass

    def stop_after_5(step, stats):
        if step == 5:
            raise Stop

    interrupted = small_model()
    with pytest.raises(Stop):
        train_tokenizer(interrupted, images, cfg, tmp_path / "b", torch.device("cpu"), on_step=stop_after_5)
    assert latest_checkpoint(tmp_path / "b").name == "step-0000004"
    resumed = small_model()  # a fresh process would start from a fresh model
    info = train_tokenizer(resumed, images, cfg, tmp_path / "b", torch.device("cpu"), resume=True)
    assert info["resumed_from"] == 4
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_cli_train_tokenizer_on_an_image_folder(runner, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(blobs(24, 32)):
        Image.fromarray(np.stack([img, img // 2, 255 - img], -1)).save(folder / f"{i:03d}.png")
    out = tmp_path / "model"
    args = ["train", "tokenizer", str(out), "--data", str(folder), "--quantizer", "vq", "--tokens", "3",
            "--codebook-size", "8", "--image-size", "32", "--channels", "3", "--base-channels", "4",
            "--res-blocks", "0", "--steps", "4", "--batch-size", "8", "--device", "cpu"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "tokenizer.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["tokenizer"]["channels"] == 3 and cfg["metrics"]["images"] == 24
    assert cfg["tokenizer"]["res_blocks"] == 0
    assert "mse" in (out / "README.md").read_text()
    pipe = load_pipeline(str(out))
    assert pipe.tokenizer.encode(torch.zeros(1, 3, 32, 32)).shape == (1, 3)

    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "--resume" in res.stderr


def test_cli_train_measures_on_the_test_folder_beside_train(runner, tmp_path):
    for split, n in (("train", 16), ("test", 6)):
        (tmp_path / "set" / split).mkdir(parents=True)
        for i, img in enumerate(blobs(n, 28)):
            Image.fromarray(img).save(tmp_path / "set" / split / f"{i:03d}.png")
    out = tmp_path / "model"
    res = runner.invoke(app, ["train", "tokenizer", str(out), "--data", str(tmp_path / "set" / "train"),
                              "--quantizer", "fsq", "--levels", "3,3", "--tokens", "2", "--base-channels", "4",
                              "--steps", "2", "--batch-size", "8", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "config.json").read_text())["metrics"]
    assert metrics["images"] == 6 and metrics["eval_data"].startswith(str(tmp_path / "set" / "test"))


def test_cli_train_rejects_bad_options(runner, tmp_path):
    res = runner.invoke(app, ["train", "tokenizer", str(tmp_path / "m"), "--quantizer", "pq", "--device", "cpu"])
    assert res.exit_code == 2 and "--quantizer" in res.stderr and "must be one of" in res.stderr
    res = runner.invoke(app, ["train", "tokenizer", str(tmp_path / "m"), "--layout", "grid", "--tokens", "5",
                              "--device", "cpu"])
    assert res.exit_code == 1 and "grid layout" in res.stderr
    res = runner.invoke(app, ["train", "tokenizer", str(tmp_path / "m"), "--winner", "best", "--device", "cpu"])
    assert res.exit_code == 2 and "--winner" in res.stderr and not (tmp_path / "m").exists()


@pytest.mark.slow
def test_kill_9_then_resume(tmp_path):
    """A real training process killed with SIGKILL resumes from its last complete checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(blobs(32, 16)):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    out = tmp_path / "model"
    args = [sys.executable, "-m", "tokenizer_cli", "train", "tokenizer", str(out), "--data", str(folder),
            "--image-size", "16", "--base-channels", "4", "--dim", "4", "--codebook-size", "8",
            "--steps", "400", "--batch-size", "8", "--checkpoint-every", "5", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 120
    while not latest.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # let it get somewhere between two checkpoints, or in the middle of writing one
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "config.json").exists()
    killed_at = latest_checkpoint(out / "checkpoints")
    assert killed_at is not None

    res = subprocess.run(args + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["resumed_from"] >= int(killed_at.name.split("-")[1]) > 0
    assert not (out / "checkpoints").exists()


def vit_model(layout: str, tokens: int, kind: str = "fsq") -> Tokenizer:
    torch.manual_seed(0)
    q = QuantizerConfig(kind=kind, dim=4, num_codes=8, mask_bits=2, levels=[4, 4])
    return Tokenizer(TokenizerConfig(image_size=16, channels=3, tokens=tokens, layout=layout, quantizer=q,
                                     backbone="vit", patch_size=4, vit_width=32, vit_layers=1, vit_heads=2))


@pytest.mark.parametrize("layout,tokens", [("1d", 3), ("grid", 16)])
def test_vit_backbone_learns_and_keeps_its_token_shape(layout, tokens, tmp_path):
    images = np.stack([blobs(64, 16, seed=s) for s in range(3)], -1)  # (64, 16, 16, 3): a disc per channel
    model = vit_model(layout, tokens)
    losses = []
    cfg = TrainConfig(steps=80, batch_size=32, lr=3e-3, warmup=5, checkpoint_every=0)
    train_tokenizer(model, images, cfg, tmp_path / "run", torch.device("cpu"),
                    on_step=lambda s, st: losses.append(st["mse"]))
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
    ids = model.encode(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert ids.shape == (2, tokens) and model.decode(ids).shape == (2, 3, 16, 16)


def test_vit_settings_a_network_cannot_have_are_one_config_error():
    from tokenizer_cli.config import ConfigError

    with pytest.raises(ConfigError, match="one token per patch"):
        TokenizerConfig(image_size=16, tokens=5, layout="grid", backbone="vit", patch_size=4)
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        TokenizerConfig(image_size=18, backbone="vit", patch_size=4)
    with pytest.raises(ConfigError, match="multiple of vit_heads"):
        TokenizerConfig(backbone="vit", vit_width=30, vit_heads=4, patch_size=4)


def test_cli_trains_a_vit_tokenizer_that_loads_back(runner, tmp_path):
    from tokenizer_cli.hub import tokenizer_digest

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(blobs(16, 16)):
        Image.fromarray(np.stack([img, img // 2, 255 - img], -1)).save(folder / f"{i:03d}.png")
    out = tmp_path / "vit"
    res = runner.invoke(app, ["train", "tokenizer", str(out), "--data", str(folder), "--quantizer", "fsq",
                              "--levels", "4,4", "--tokens", "4", "--image-size", "16", "--backbone", "vit", "--patch-size", "4",
                              "--vit-width", "32", "--vit-layers", "1", "--vit-heads", "2", "--steps", "2",
                              "--batch-size", "8", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    tok = json.loads((out / "config.json").read_text())["tokenizer"]
    assert tok["backbone"] == "vit" and tok["vit_width"] == 32 and tok["channels"] == 3
    pipe = load_pipeline(str(out))
    assert pipe.tokenizer.encode(torch.zeros(1, 3, 16, 16)).shape == (1, 4)
    # A conv model's config (and so the digest token files record) has no vit fields.
    conv = small_model()
    assert "backbone" not in json.dumps(conv.cfg.to_dict())
    assert tokenizer_digest(conv) == tokenizer_digest(small_model())
