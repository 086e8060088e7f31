"""`mvq train` under torchrun: 2 CPU processes (gloo) match 1 process with the same global batch."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from test_train import blobs

pytestmark = pytest.mark.slow  # subprocesses and trainings: outside the fast suite


def train(out: Path, folder: Path, procs: int, quantizer: str) -> dict:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found")
    launcher = [torchrun, "--nproc_per_node", str(procs), "--master_port", str(29500 + procs + os.getpid() % 500),
                "-m"] if procs > 1 else [sys.executable, "-m"]
    args = launcher + ["tokenizer_cli", "train", "tokenizer", str(out), "--data", str(folder), "--quantizer", quantizer,
                       "--levels", "5,5,4", "--dim", "4", "--codebook-size", "8", "--image-size", "16",
                       "--base-channels", "4", "--steps", "12", "--batch-size", "16", "--device", "cpu",
                       "--precision", "fp32"]  # the same sums in two halves: fp32, where bf16 rounds them apart
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads((out / "config.json").read_text())


@pytest.mark.parametrize("quantizer", ["fsq", "vq"])
def test_two_processes_match_one(tmp_path, quantizer):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(blobs(64, 16)):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    one = train(tmp_path / "one", folder, 1, quantizer)
    two = train(tmp_path / "two", folder, 2, quantizer)
    assert two["training"]["processes"] == 2 and one["training"]["processes"] == 1
    loss1 = np.array([l for _, l in one["training"]["loss_history"]])
    loss2 = np.array([l for _, l in two["training"]["loss_history"]])
    assert len(loss1) == len(loss2) == 12
    if quantizer == "fsq":  # no random state in the quantizer: the same computation, split in two
        np.testing.assert_allclose(loss2, loss1, rtol=1e-3)
        w1, w2 = load_file(tmp_path / "one" / "tokenizer.safetensors"), load_file(tmp_path / "two" / "tokenizer.safetensors")
        for k in w1:
            assert torch.allclose(w1[k], w2[k], atol=2e-3), k  # Adam magnifies float-order noise a little
    else:  # VQ's data init and restarts draw different samples; the curve still agrees
        np.testing.assert_allclose(loss2[-4:], loss1[-4:], rtol=0.25)
    assert not list((tmp_path / "two").glob("checkpoints*"))


def test_prior_trains_data_parallel_and_only_rank_0_writes(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(blobs(64, 16)):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    train(tmp_path / "one", folder, 1, "fsq")
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    histories = {}
    for name, procs in (("one", 1), ("two", 2)):
        launcher = [torchrun, "--nproc_per_node", "2", "--master_port", str(29700 + os.getpid() % 500), "-m"] \
            if procs > 1 else [sys.executable, "-m"]
        args = launcher + ["tokenizer_cli", "train", "prior", str(tmp_path / name), "--data", str(folder),
                           "--layers", "1", "--heads", "2", "--width", "16", "--steps", "10", "--batch-size", "16",
                           "--device", "cpu"]
        res = subprocess.run(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        assert res.stderr.count("wrote ") == 1  # one rank wrote the model folder
        cfg = json.loads((tmp_path / name / "config.json").read_text())["prior_training"]
        assert cfg["processes"] == procs
        histories[name] = np.array([l for _, l in cfg["loss_history"]])
    np.testing.assert_allclose(histories["two"], histories["one"], rtol=1e-3)
    assert not list((tmp_path / "two").glob("checkpoints*"))
