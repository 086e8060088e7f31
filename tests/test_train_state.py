"""Training state is exact and complete: the loss history survives a resume, --seed fixes the model's
initialisation, and checkpoints hold every RNG they need."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tokenizer_cli.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from tokenizer_cli.cli.app import app


def train(out, *extra):
    args = ["train", "tokenizer", str(out), "--quantizer", "fsq", "--levels", "3,3", "--base-channels", "4",
            "--batch-size", "16", "--device", "cpu", "--data", str(out.parent / "imgs"), "--image-size", "16", *extra]
    return CliRunner().invoke(app, args)


def images(folder, n=48):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def test_checkpoints_keep_the_loss_history_and_the_rng(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    torch.manual_seed(5)
    save_checkpoint(tmp_path, 4, {"m": model}, opt, {"history": [[1, 0.5], [2, 0.4]]})
    want = torch.rand(3)
    torch.manual_seed(6)
    info = load_checkpoint(latest_checkpoint(tmp_path), {"m": model}, opt)
    assert info["history"] == [[1, 0.5], [2, 0.4]] and info["step"] == 4
    assert torch.equal(torch.rand(3), want)  # the RNG continues where the checkpoint left it


def test_resumed_training_keeps_the_whole_loss_history(tmp_path):
    """A run killed after a checkpoint and resumed reports the history of all its steps, like an unbroken run."""
    from tokenizer_cli.config import QuantizerConfig, TokenizerConfig
    from tokenizer_cli.models import Tokenizer
    from tokenizer_cli.train import TrainConfig, train_tokenizer

    data = np.random.default_rng(0).integers(0, 255, (64, 16, 16), dtype=np.uint8)

    def model():
        torch.manual_seed(0)
        return Tokenizer(TokenizerConfig(image_size=16, base_channels=4,
                                         quantizer=QuantizerConfig(kind="fsq", levels=[3, 3])))

    cfg = TrainConfig(steps=8, batch_size=16, checkpoint_every=4)
    cpu = torch.device("cpu")
    whole = train_tokenizer(model(), data, cfg, tmp_path / "a", cpu)
    train_tokenizer(model(), data, TrainConfig(steps=4, batch_size=16, checkpoint_every=4), tmp_path / "b", cpu)
    resumed = train_tokenizer(model(), data, cfg, tmp_path / "b", cpu, resume=True)
    assert resumed["resumed_from"] == 4
    assert [s for s, _ in resumed["history"]] == [s for s, _ in whole["history"]] == list(range(1, 9))
    np.testing.assert_allclose([l for _, l in resumed["history"]], [l for _, l in whole["history"]], rtol=1e-4)


def test_seed_fixes_the_initialisation(tmp_path):
    images(tmp_path / "imgs")
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        res = train(tmp_path / name, "--steps", "1", "--seed", seed)
        assert res.exit_code == 0, res.output
    a, b, c = (load_file(tmp_path / n / "tokenizer.safetensors") for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
