"""Tests of the autoregressive prior: shapes, causality, KV cache, sampling options, conditioning."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tokenizer_cli.config import PriorConfig
from tokenizer_cli.models.prior import Prior


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and do not stall when other jobs share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_prior(vocab=13, tokens=7, num_classes=0, std=0.3, seed=0, **kw) -> Prior:
    """A tiny prior with larger-than-init weights, so logits and attention are far from uniform."""
    torch.manual_seed(seed)
    cfg = PriorConfig(vocab_size=vocab, tokens=tokens, n_layer=2, n_head=2, n_embd=32, num_classes=num_classes, **kw)
    model = Prior(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" not in name:
                nn.init.normal_(p, std=std)
    return model.eval()


def controlled_prior(logits: list[float], tokens=4) -> Prior:
    """Every position gets exactly these logits: zero head weight, the head bias holds them."""
    model = make_prior(vocab=len(logits), tokens=tokens)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor(logits))
    return model


def test_shapes_and_loss():
    model = make_prior()
    x = torch.randint(0, 13, (3, 7))
    assert model(x).shape == (3, 7, 13)
    assert model(x[:, :4]).shape == (3, 4, 13)  # shorter prefixes are fine
    loss = model.loss(x)
    assert loss.shape == () and torch.isfinite(loss)
    with torch.no_grad():
        assert model(x).shape == (3, 7, 13)
    out = model.generate(5, seed=0)
    assert out.shape == (5, 7) and out.dtype == torch.long
    assert out.min() >= 0 and out.max() < 13  # never the start id
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(2, 8, dtype=torch.long))


def test_causality():
    model = make_prior()
    x = torch.randint(0, 13, (2, 7))
    base = model(x)
    for i in range(7):
        y = x.clone()
        y[:, i] = (y[:, i] + 1) % 13
        out = model(y)
        torch.testing.assert_close(out[:, : i + 1], base[:, : i + 1], rtol=0, atol=1e-6)
        if i < 6:
            assert not torch.allclose(out[:, i + 1 :], base[:, i + 1 :])


@pytest.mark.parametrize("tokens", [2, 49])
def test_cache_logits_match_full_pass(tokens):
    model = make_prior(vocab=50, tokens=tokens)
    x = torch.randint(0, 50, (3, tokens))
    full = model(x)  # (3, T, V)
    ids = torch.cat([torch.full((3, 1), model.start_id), x[:, :-1]], dim=1)
    with torch.inference_mode():
        cache = model._new_cache(3, torch.float32)
        steps = [model._run(ids[:, i : i + 1], None, cache, pos=i) for i in range(tokens)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


SAMPLING = [
    dict(),
    dict(temperature=0.0),
    dict(temperature=0.7, top_k=5),
    dict(top_p=0.8),
    dict(temperature=1.3, top_k=20, top_p=0.9),
]


@pytest.mark.parametrize("tokens", [2, 49])
@pytest.mark.parametrize("opts", SAMPLING, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_cache_equals_no_cache_exactly(tokens, opts):
    model = make_prior(vocab=50, tokens=tokens)
    for seed in range(4):
        cached = model.generate(6, seed=seed, **opts)
        recomputed = model.generate(6, seed=seed, use_cache=False, **opts)
        assert torch.equal(cached, recomputed), f"seed {seed}"
    chunked = model.generate(7, seed=9, batch_size=3, **opts)
    assert torch.equal(chunked, model.generate(7, seed=9, batch_size=3, use_cache=False, **opts))


def test_cache_equals_no_cache_conditional():
    model = make_prior(vocab=30, tokens=9, num_classes=3)
    labels = torch.tensor([0, 1, 2, 2, 1])
    for seed in range(3):
        a = model.generate(5, seed=seed, labels=labels, top_k=10)
        assert torch.equal(a, model.generate(5, seed=seed, labels=labels, top_k=10, use_cache=False))


def test_top_k_1_is_greedy_and_tiny_top_p_is_greedy():
    model = make_prior(vocab=40, tokens=10)
    greedy = model.generate(8, temperature=0)
    for seed in range(3):
        assert torch.equal(model.generate(8, top_k=1, seed=seed), greedy)
        assert torch.equal(model.generate(8, top_p=1e-6, seed=seed), greedy)
    assert torch.equal(model.generate(8, temperature=0, batch_size=3), greedy)  # greedy ignores chunking


def test_top_k_never_leaves_the_top_k_set():
    logits = [0.0, 3.0, -1.0, 2.9, 2.8, 0.5, 2.7, 1.0]  # top 3: ids 1, 3, 4
    model = controlled_prior(logits)
    out = model.generate(300, top_k=3, seed=0)
    assert set(out.unique().tolist()) == {1, 3, 4}
    out = model.generate(300, top_k=3, temperature=5.0, seed=1)  # a flat distribution stays inside too
    assert set(out.unique().tolist()) == {1, 3, 4}
    assert len(model.generate(300, seed=2).unique()) == 8  # without top_k, every id shows up


def test_top_p_keeps_the_nucleus():
    probs = torch.tensor([0.5, 0.3, 0.12, 0.05, 0.03])
    model = controlled_prior(probs.log().tolist())
    assert set(model.generate(300, top_p=0.7, seed=0).unique().tolist()) == {0, 1}  # 0.5 < 0.7 <= 0.8
    assert set(model.generate(300, top_p=0.85, seed=0).unique().tolist()) == {0, 1, 2}
    assert set(model.generate(300, top_p=0.4, seed=0).unique().tolist()) == {0}  # at least one token
    assert len(model.generate(300, top_p=1.0, seed=0).unique()) == 5


def test_seeds():
    model = make_prior(vocab=50, tokens=20)
    a = model.generate(16, seed=1)
    assert torch.equal(a, model.generate(16, seed=1))
    assert not torch.equal(a, model.generate(16, seed=2))
    state = torch.get_rng_state()
    model.generate(4)  # no seed: still works, and leaves the global RNG alone
    assert torch.equal(state, torch.get_rng_state())


def test_class_conditioning():
    model = make_prior(vocab=20, tokens=6, num_classes=4)
    x = torch.randint(0, 20, (2, 6))
    assert not torch.allclose(model(x, torch.tensor([0, 0])), model(x, torch.tensor([1, 1])))
    by_label = [model.generate(4, temperature=0, labels=c) for c in range(4)]  # an int label is broadcast
    assert len({tuple(g[0].tolist()) for g in by_label}) > 1
    with pytest.raises(ValueError, match="labels are required"):
        model.generate(2)
    with pytest.raises(ValueError, match="labels are required"):
        model(x)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        model.generate(2, labels=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="shape"):
        model.generate(3, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unconditional"):
        make_prior().generate(2, labels=torch.tensor([0, 1]))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n=0),
        dict(n=-3),
        dict(n=2.5),
        dict(n=True),
        dict(n=2, temperature=-0.1),
        dict(n=2, temperature=math.nan),
        dict(n=2, top_k=0),
        dict(n=2, top_p=0.0),
        dict(n=2, top_p=1.5),
        dict(n=2, batch_size=0),
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_prior().generate(**kwargs)


def test_generate_restores_training_mode():
    model = make_prior(dropout=0.1).train()
    a, b = model.generate(3, seed=0), model.generate(3, seed=0)
    assert model.training and torch.equal(a, b)  # dropout is off while sampling


def train(model: Prior, data: torch.Tensor, labels=None, steps=120, lr=1e-2) -> tuple[float, float]:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    first = last = 0.0
    for step in range(steps):
        loss = model.loss(data, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        first, last = (loss.item() if step == 0 else first), loss.item()
    return first, last


def test_overfits_class_conditional_patterns():
    torch.manual_seed(0)
    model = Prior(PriorConfig(vocab_size=16, tokens=8, n_layer=2, n_head=2, n_embd=32, num_classes=4))
    patterns = torch.randint(0, 16, (4, 8))  # one fixed sequence per class
    labels = torch.arange(4).repeat(8)
    first, last = train(model, patterns[labels], labels)
    assert first > 2.0 and last < 0.05
    assert torch.equal(model.generate(4, temperature=0, labels=torch.arange(4)), patterns)
    assert torch.equal(model.generate(4, temperature=0, labels=torch.arange(4), use_cache=False), patterns)


def test_overfits_a_deterministic_rule():
    torch.manual_seed(0)
    model = Prior(PriorConfig(vocab_size=16, tokens=10, n_layer=2, n_head=2, n_embd=32))
    seqs = [torch.randint(0, 16, (64,))]
    for _ in range(9):
        seqs.append((5 * seqs[-1] + 3) % 16)  # t_{i+1} = 5 t_i + 3 (mod 16): only t_0 is random
    first, last = train(model, torch.stack(seqs, dim=1))
    assert first > 2.5 and last < 0.35  # from ~log(16) down to ~log(16)/10, the entropy of t_0 alone
    for out in (model.generate(4, temperature=0), model.generate(64, temperature=0.5, seed=0)):
        torch.testing.assert_close(out[:, 1:], (5 * out[:, :-1] + 3) % 16, rtol=0, atol=0)


def test_generated_tokens_are_ordinary_tensors():
    out = make_prior().generate(2, seed=0)
    assert not out.is_inference()
    out[0, 0] = 1  # callers may edit the samples in place


def test_bad_config():
    with pytest.raises(ValueError, match="multiple"):
        Prior(PriorConfig(n_embd=30, n_head=4))


def test_weights_with_the_old_mlp_names_load_and_upgrade(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    from conftest import tiny_prior, tiny_tokenizer
    from tokenizer_cli.hub import save_pipeline
    from tokenizer_cli.pipeline import load_pipeline

    tok = tiny_tokenizer("vq")
    prior = tiny_prior(tok.vocab_size, 2)
    folder = save_pipeline(tmp_path / "m", tok, prior)
    state = load_file(folder / "prior.safetensors")
    old = {k.replace(".mlp.c_fc.", ".mlp.0.").replace(".mlp.c_proj.", ".mlp.2."): v for k, v in state.items()}
    assert any(".mlp.0." in k for k in old)
    save_file(old, folder / "prior.safetensors")  # as mvq 0.1 wrote it
    want = prior.generate(4, seed=1)
    assert torch.equal(load_pipeline(str(folder)).prior.generate(4, seed=1), want)
    script = Path(__file__).resolve().parents[1] / "scripts" / "upgrade_weights.py"
    res = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert set(load_file(folder / "prior.safetensors")) == set(state)
    assert torch.equal(load_pipeline(str(folder)).prior.generate(4, seed=1), want)


def test_mask_head_predicts_masks_and_cached_sampling_equals_uncached():
    from tokenizer_cli.config import PriorConfig

    torch.manual_seed(0)
    prior = Prior(PriorConfig(vocab_size=6, tokens=4, n_layer=1, n_head=2, n_embd=16, num_masks=5))
    tokens, masks = torch.randint(0, 6, (8, 4)), torch.randint(0, 5, (8, 4))
    logits, mask_logits = prior(tokens, masks=masks)
    assert logits.shape == (8, 4, 6) and mask_logits.shape == (8, 4, 5)
    with pytest.raises(ValueError, match="mask head"):
        prior(tokens)  # a prior with a mask head needs the masks
    loss = prior.loss(tokens, masks=masks)
    assert loss > prior.loss(tokens, masks=masks) * 0 and loss.requires_grad
    loss.backward()
    assert prior.mask_head[0].weight.grad.abs().sum() > 0 and prior.wme.weight.grad.abs().sum() > 0
    ids_a, masks_a = prior.generate(7, seed=2, return_masks=True)
    ids_b, masks_b = prior.generate(7, seed=2, return_masks=True, use_cache=False)
    assert torch.equal(ids_a, ids_b) and torch.equal(masks_a, masks_b)
    assert masks_a.shape == (7, 4) and masks_a.min() >= 0 and masks_a.max() < 5
    assert torch.equal(prior.generate(7, seed=2), ids_a)  # without return_masks: the ids alone
    greedy = prior.generate(3, seed=0, mask_temperature=0.0, return_masks=True)[1]
    assert torch.equal(greedy, prior.generate(3, seed=0, mask_temperature=0.0, return_masks=True)[1])


def test_mask_head_learns_masks_that_depend_on_the_earlier_tokens():
    """Mask of token 1 = code of token 0 (mod M): only a head that sees the sequence can predict it."""
    from tokenizer_cli.config import PriorConfig

    torch.manual_seed(0)
    prior = Prior(PriorConfig(vocab_size=4, tokens=2, n_layer=1, n_head=2, n_embd=32, num_masks=4))
    opt = torch.optim.AdamW(prior.parameters(), lr=3e-3)
    for _ in range(300):
        tokens = torch.randint(0, 4, (64, 2))
        masks = torch.stack([torch.zeros(64, dtype=torch.long), tokens[:, 0]], dim=1)
        loss = prior.loss(tokens, masks=masks)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ids, masks = prior.generate(200, seed=0, return_masks=True, mask_temperature=0.0)
    assert (masks[:, 1] == ids[:, 0]).float().mean() > 0.95
