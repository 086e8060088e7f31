"""The fast paths: bf16 autocast training on CPU, the quantizer kept in float32, graph sampling, the benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_prior, tiny_tokenizer


@pytest.fixture(autouse=True)
def fresh_compile_cache():
    """Each test compiles its own models: torch.compile's per-code-object recompile limit (8) is for one
    process's lifetime, and a test suite builds many priors."""
    torch._dynamo.reset()
    yield
from tokenizer_cli.models.autoencoder import Downsample
from tokenizer_cli.train import TrainConfig, train_prior, train_tokenizer

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("kind", ["mvq", "vq", "fsq"])
def test_bf16_training_runs_on_cpu(kind, tmp_path):
    model = tiny_tokenizer(kind).train()
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    cfg = TrainConfig(steps=3, batch_size=16, checkpoint_every=0, precision="bf16")
    out = train_tokenizer(model, images, cfg, tmp_path / "run", torch.device("cpu"))
    assert np.isfinite(out["loss"]) and np.isfinite(out["mse"])
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast: weights stay float32


@pytest.mark.parametrize("kind", ["mvq", "vq", "fsq"])
def test_quantizer_is_float32_under_autocast(kind):
    """Identical ids, codes and loss with and without bf16 autocast, for the same (float32) latents."""
    model = tiny_tokenizer(kind)
    torch.manual_seed(1)
    z = torch.randn(64, model.cfg.tokens, model.quantizer.dim) * 2
    ref = model.quantize(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.quantize(z)
        stored = {"masks": out.masks} if out.masks is not None else {}  # MVQ with sampled masks: the winners
        codes = model.codes(out.indices, **stored)
    assert out.z_q.dtype == torch.float32 and codes.dtype == torch.float32
    assert torch.equal(out.indices, ref.indices)
    assert torch.equal(out.z_q, ref.z_q)
    assert torch.equal(out.loss, ref.loss)
    assert torch.equal(codes, model.codes(ref.indices, **stored))


def test_vq_distances_would_differ_in_bf16():
    """The guard matters: called directly under autocast, VQ's distance matmul runs in bf16 and picks other codes."""
    torch.manual_seed(0)
    from tokenizer_cli.quantizers import VQ

    vq = VQ(256, 16).eval()
    z = torch.randn(2048, 1, 16)
    ref = vq(z).indices
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = vq(z).indices
    assert not torch.equal(raw, ref)


def test_downsample_under_bf16_matches_the_strided_conv():
    torch.manual_seed(0)
    conv = Downsample(4, 8)
    assert set(conv.state_dict()) == {"weight", "bias"} and conv.weight.shape == (8, 4, 4, 4)
    x = torch.randn(3, 4, 14, 14, requires_grad=True)
    ref = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.shape == ref.shape
    assert torch.allclose(y.float(), ref, atol=0.05 * ref.abs().max().item())
    y.float().sum().backward()
    assert conv.weight.grad is not None and x.grad is not None
    with torch.no_grad():  # in float32 it is the plain strided conv, bit for bit
        assert torch.equal(conv(x), ref)


def test_bf16_prior_training_runs(tmp_path):
    prior = tiny_prior(vocab_size=8, tokens=3)
    rows = np.random.default_rng(0).integers(0, 8, (64, 3))
    out = train_prior(prior, rows, None, TrainConfig(steps=3, batch_size=16, checkpoint_every=0, precision="bf16"),
                      tmp_path / "run", torch.device("cpu"))
    assert np.isfinite(out["loss"])


@pytest.mark.slow
@pytest.mark.parametrize("sampling", [{}, {"top_k": 3}, {"temperature": 0.0}])
def test_graph_sampling_gives_the_eager_tokens(sampling):
    prior = tiny_prior(vocab_size=12, tokens=5)
    eager = prior.generate(40, seed=3, batch_size=20, **sampling)
    graph = prior.generate(40, seed=3, batch_size=20, graph=True, **sampling)
    assert torch.equal(graph, eager)


@pytest.mark.slow
def test_graph_sampling_with_classes():
    from tokenizer_cli.config import PriorConfig
    from tokenizer_cli.models import Prior

    torch.manual_seed(0)
    prior = Prior(PriorConfig(vocab_size=10, tokens=4, n_layer=1, n_head=2, n_embd=16, num_classes=3))
    labels = torch.arange(30) % 3
    assert torch.equal(prior.generate(30, seed=1, labels=labels, graph=True), prior.generate(30, seed=1, labels=labels))


def test_bench_script_runs_on_a_tiny_config():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_train.py"), "tokenizer", "--threads", "1",
                          "--steps", "2", "--warmup", "1", "--batch-size", "8", "--images", "64",
                          "--base-channels", "4", "--precision", "bf16"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["per_second"] > 0 and result["precision"] == "bf16"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_train.py"), "prior", "--threads", "1",
                          "--steps", "2", "--warmup", "1", "--batch-size", "8", "--images", "64", "--layers", "1",
                          "--width", "16", "--heads", "2", "--vocab", "8"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout.strip().splitlines()[-1])["per_second"] > 0


@pytest.mark.slow
def test_bench_script_compares_with_a_git_ref(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_train.py"), "tokenizer", "--threads", "1",
                          "--steps", "1", "--warmup", "1", "--batch-size", "8", "--images", "64",
                          "--base-channels", "4", "--compare", "HEAD", "--repeats", "1"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["old"] == "HEAD" and result["speedup"] > 0


@pytest.mark.slow
def test_graph_sampling_with_a_mask_head():
    from tokenizer_cli.config import PriorConfig
    from tokenizer_cli.models import Prior

    torch.manual_seed(0)
    prior = Prior(PriorConfig(vocab_size=10, tokens=4, n_layer=1, n_head=2, n_embd=16, num_masks=5))
    eager = prior.generate(30, seed=1, return_masks=True)
    graph = prior.generate(30, seed=1, return_masks=True, graph=True)
    assert torch.equal(graph[0], eager[0]) and torch.equal(graph[1], eager[1])
