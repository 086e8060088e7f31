"""CPU inference in pieces (models/cpu_pieces.py): the same results as one whole batch, never under a gradient,
never through batch norm in training mode, and MVQ's drawn masks unchanged."""

from __future__ import annotations

import pytest
import torch

from tokenizer_cli.classifier import Classifier, ClassifierConfig
from tokenizer_cli.config import QuantizerConfig, TokenizerConfig
from tokenizer_cli.models import Tokenizer, cpu_pieces
from tokenizer_cli.models.cpu_pieces import in_cpu_pieces, piece_size

from conftest import tiny_tokenizer


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of 3 images of 28x28, so a batch of 10 goes through in 4."""
    monkeypatch.setattr(cpu_pieces, "CPU_PIECE_PIXELS", 3 * 28 * 28)


def test_piece_size_only_without_gradient_and_for_big_batches(small_pieces):
    x = torch.zeros(10, 1, 28, 28)
    assert piece_size(x, 28 * 28) is None  # gradients on: never split
    with torch.no_grad():
        assert piece_size(x, 28 * 28) == 3
        assert piece_size(x[:3], 28 * 28) is None  # fits in one piece
        assert piece_size(x[:0], 28 * 28) is None  # nothing to split
        assert piece_size(x, 10**9) == 1  # an item over the budget still goes through, one at a time


def test_in_cpu_pieces_calls_fn_per_piece(small_pieces):
    sizes = []

    def fn(part):
        sizes.append(len(part))
        return part * 2

    x = torch.arange(10.0).view(10, 1, 1, 1).expand(10, 1, 28, 28)
    with torch.inference_mode():
        out = in_cpu_pieces(fn, x, 28 * 28)
    assert sizes == [3, 3, 3, 1]
    assert torch.equal(out, x * 2)


def vit_tokenizer(layout: str) -> Tokenizer:
    torch.manual_seed(0)
    q = QuantizerConfig(kind="mvq", dim=4, num_codes=4, mask_bits=2)
    cfg = TokenizerConfig(image_size=28, channels=1, tokens=4 if layout == "1d" else 16, layout=layout,
                          backbone="vit", patch_size=7, vit_width=16, vit_layers=1, vit_heads=2, quantizer=q)
    model = Tokenizer(cfg)
    model.train()
    model(torch.rand(8, 1, 28, 28) * 2 - 1)
    return model.eval()


@pytest.mark.parametrize("make", [lambda: tiny_tokenizer("mvq"), lambda: tiny_tokenizer("vq"),
                                  lambda: tiny_tokenizer("fsq"), lambda: tiny_tokenizer("mvq-joint"),
                                  lambda: vit_tokenizer("1d"), lambda: vit_tokenizer("grid")],
                         ids=["mvq", "vq", "fsq", "mvq-joint", "vit-1d", "vit-grid"])
def test_tokenizer_encode_decode_same_in_pieces(make, monkeypatch):
    tok = make()
    x = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    pieces = []
    monkeypatch.setattr(tok, "decode_latents", lambda z, f=tok.decode_latents: pieces.append(len(z)) or f(z))
    ids, masks = tok.encode(x, with_masks=True)
    whole = tok.decode(ids, generator=torch.Generator().manual_seed(2))  # MVQ sampled: masks drawn
    assert pieces == [10]
    monkeypatch.setattr(cpu_pieces, "CPU_PIECE_PIXELS", 3 * 28 * 28)
    ids2, masks2 = tok.encode(x, with_masks=True)
    assert torch.equal(ids, ids2)
    assert (masks is None and masks2 is None) or torch.equal(masks, masks2)
    in_pieces = tok.decode(ids, generator=torch.Generator().manual_seed(2))
    assert pieces == [10, 3, 3, 3, 1]
    torch.testing.assert_close(in_pieces, whole, atol=1e-5, rtol=0)


def test_classifier_features_in_pieces_in_eval_whole_in_training(small_pieces, monkeypatch):
    torch.manual_seed(0)
    net = Classifier(ClassifierConfig(width=4))
    x = torch.rand(10, 1, 28, 28) * 2 - 1
    calls = []
    net.body.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    with torch.no_grad():
        net.train()
        net.features(x)  # batch norm on the batch's statistics: one piece
        assert calls == [10]
        calls.clear()
        net.eval()
        in_pieces = net.features(x)
        assert calls == [3, 3, 3, 1]
    monkeypatch.setattr(cpu_pieces, "CPU_PIECE_PIXELS", 1 << 40)
    with torch.no_grad():
        torch.testing.assert_close(net.features(x), in_pieces, atol=1e-5, rtol=0)
