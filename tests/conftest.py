"""Tiny real models and real image files, written by the tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tokenizer_cli.config import QuantizerConfig, TokenizerConfig
from tokenizer_cli.hub import save_pipeline
from tokenizer_cli.models import Tokenizer

torch.set_num_threads(1)  # tiny models: a second thread on a two-core machine costs more than it gives


def tiny_tokenizer(kind: str = "mvq", tokens: int = 2, image_size: int = 28, channels: int = 1) -> Tokenizer:
    torch.manual_seed(0)
    q = QuantizerConfig(kind=kind, dim=4, num_codes=4, mask_bits=2, levels=[3, 3, 2, 2])
    cfg = TokenizerConfig(image_size=image_size, channels=channels, tokens=tokens, base_channels=4, quantizer=q)
    model = Tokenizer(cfg)
    model.train()
    model(torch.rand(8, channels, image_size, image_size) * 2 - 1)  # data-init the codebook
    return model.eval()


@pytest.fixture
def model_dir(tmp_path):
    """A real model folder (config.json + tokenizer.safetensors) of a tiny 2-token MVQ for 28x28 grey."""
    folder = tmp_path / "tiny-model"
    save_pipeline(folder, tiny_tokenizer())
    return folder


@pytest.fixture
def image_dir(tmp_path):
    """A folder tree of real images in several modes and sizes."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), "L").save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8), "RGB").save(root / "b.jpg")
    Image.fromarray(rng.integers(0, 255, (17, 50, 4), dtype=np.uint8), "RGBA").save(root / "sub" / "c.png")
    Image.fromarray(rng.integers(0, 255, (9, 9), dtype=np.uint8), "L").convert("P").save(root / "sub" / "d.gif")
    return root


@pytest.fixture
def runner():
    return CliRunner()


def tiny_prior(vocab_size: int, tokens: int):
    from tokenizer_cli.config import PriorConfig
    from tokenizer_cli.models import Prior

    torch.manual_seed(0)
    return Prior(PriorConfig(vocab_size=vocab_size, tokens=tokens, n_layer=1, n_head=2, n_embd=16))


def tiny_maskgit_prior(vocab_size: int, tokens: int, num_masks: int = 0, num_classes: int = 0):
    from tokenizer_cli.config import MaskGITConfig
    from tokenizer_cli.models import MaskGITPrior

    torch.manual_seed(1)
    return MaskGITPrior(MaskGITConfig(vocab_size=vocab_size, tokens=tokens, n_layer=1, n_head=2, n_embd=16,
                                      num_masks=num_masks, num_classes=num_classes))


@pytest.fixture
def model_with_both_priors(tmp_path):
    """A tiny 2-token MVQ tokenizer with a tiny AR prior and a tiny MaskGIT prior, as a model folder."""
    folder = tmp_path / "tiny-with-both"
    tok = tiny_tokenizer()
    save_pipeline(folder, tok, tiny_prior(tok.vocab_size, 2), maskgit_prior=tiny_maskgit_prior(tok.vocab_size, 2))
    return folder


@pytest.fixture
def model_with_prior(tmp_path):
    """A tiny 2-token MVQ tokenizer with a tiny prior, as a model folder."""
    folder = tmp_path / "tiny-with-prior"
    tok = tiny_tokenizer()
    save_pipeline(folder, tok, tiny_prior(tok.vocab_size, 2))
    return folder


@pytest.fixture
def vq_baseline_with_prior(tmp_path):
    """A tiny VQ with more tokens (grid 7x7 = 49), as a long-sequence baseline."""
    from tokenizer_cli.config import QuantizerConfig, TokenizerConfig

    torch.manual_seed(0)
    q = QuantizerConfig(kind="vq", dim=4, num_codes=4)
    tok = Tokenizer(TokenizerConfig(tokens=49, layout="grid", base_channels=4, quantizer=q)).eval()
    folder = tmp_path / "tiny-vq-grid"
    save_pipeline(folder, tok, tiny_prior(4, 49))
    return folder


def run_interrupted_at_step(monkeypatch, run, field: str, step: int):
    """Run a CLI training (`run()`) whose progress bar raises Ctrl-C once `step` training steps are reported
    (a step's bar update carries `field`, e.g. "loss" or "mse"; loading or encoding updates do not)."""
    from tokenizer_cli.cli.common import Bar

    advance, steps = Bar.advance, []

    def advance_then_interrupt(self, n=1, **fields):
        steps.append(field in fields)
        if sum(steps) == step + 1:  # the checkpoint of `step` is written
            raise KeyboardInterrupt
        advance(self, n, **fields)

    with monkeypatch.context() as m:
        m.setattr(Bar, "advance", advance_then_interrupt)
        return run()
