"""CPU inference in chunks (models/chunking.py): the same results as one whole batch, never under a gradient,
never through batch norm in training mode, and MVQ's drawn masks unchanged."""

from __future__ import annotations

import pytest
import torch

from tokenizer_cli.classifier import Classifier, ClassifierConfig
from tokenizer_cli.models import chunking
from tokenizer_cli.models.chunking import chunk_size, in_cpu_chunks

from conftest import tiny_tokenizer


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 3 images of 28x28, so a batch of 10 goes through in 4 pieces."""
    monkeypatch.setattr(chunking, "CPU_CHUNK_PIXELS", 3 * 28 * 28)


def test_chunk_size_only_without_gradient_and_for_big_batches(small_chunks):
    x = torch.zeros(10, 1, 28, 28)
    assert chunk_size(x, 28 * 28) is None  # gradients on: never split
    with torch.no_grad():
        assert chunk_size(x, 28 * 28) == 3
        assert chunk_size(x[:3], 28 * 28) is None  # fits in one chunk
        assert chunk_size(x, 10**9) == 1  # an item over the budget still goes through, one at a time


def test_in_cpu_chunks_calls_fn_per_chunk(small_chunks):
    sizes = []

    def fn(part):
        sizes.append(len(part))
        return part * 2

    x = torch.arange(10.0).view(10, 1, 1, 1).expand(10, 1, 28, 28)
    with torch.inference_mode():
        out = in_cpu_chunks(fn, x, 28 * 28)
    assert sizes == [3, 3, 3, 1]
    assert torch.equal(out, x * 2)


@pytest.mark.parametrize("kind", ["mvq", "vq", "fsq", "mvq-joint"])
def test_tokenizer_encode_decode_same_in_chunks(kind, monkeypatch):
    tok = tiny_tokenizer(kind)
    x = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ids, masks = tok.encode(x, with_masks=True)
    whole = tok.decode(ids, generator=torch.Generator().manual_seed(2))  # MVQ sampled: masks drawn
    monkeypatch.setattr(chunking, "CPU_CHUNK_PIXELS", 3 * 28 * 28)
    ids2, masks2 = tok.encode(x, with_masks=True)
    assert torch.equal(ids, ids2)
    assert (masks is None and masks2 is None) or torch.equal(masks, masks2)
    chunked = tok.decode(ids, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)


def test_classifier_features_chunked_in_eval_whole_in_training(small_chunks):
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
        chunked = net.features(x)
        assert calls == [3, 3, 3, 1]
    chunking.CPU_CHUNK_PIXELS = 1 << 40
    with torch.no_grad():
        torch.testing.assert_close(net.features(x), chunked, atol=1e-5, rtol=0)
