"""Tests of the MaskGIT prior and its parallel decoding: the schedule, fixed tokens, seeds, training masks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tokenizer_cli.config import ConfigError, MaskGITConfig
from tokenizer_cli.models import MaskGITPrior
from tokenizer_cli.models.maskgit import masked_loss
from tokenizer_cli.models import parallel_decode
from tokenizer_cli.models.parallel_decode import decode, masked_after


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_prior(vocab=13, tokens=7, num_classes=0, num_masks=0, std=0.3, seed=0, **kw) -> MaskGITPrior:
    """A tiny MaskGIT prior with larger-than-init weights, so logits are far from uniform."""
    torch.manual_seed(seed)
    cfg = MaskGITConfig(vocab_size=vocab, tokens=tokens, n_layer=2, n_head=2, n_embd=32, num_classes=num_classes,
                        num_masks=num_masks, **kw)
    model = MaskGITPrior(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" not in name:
                nn.init.normal_(p, std=std)
    return model.eval()


def recording(model: MaskGITPrior) -> list[torch.Tensor]:
    """Every ids tensor the model is run on while decoding, in order."""
    seen, run = [], model._run

    def spy(ids, labels, mask_ids, at=None):
        seen.append(ids.clone())
        return run(ids, labels, mask_ids, at)

    model._run = spy
    return seen


@pytest.mark.parametrize("tokens, steps", [(2, 1), (2, 2), (5, 3), (16, 8), (16, 16), (49, 8), (49, 12)])
@pytest.mark.parametrize("opts", [dict(), dict(temperature=0.0, choice_temperature=0.0), dict(top_k=3)],
                         ids=["plain", "greedy", "top_k"])
def test_each_step_fixes_the_scheduled_number_and_never_remasks(tokens, steps, opts):
    model = make_prior(vocab=11, tokens=tokens)
    seen = recording(model)
    out = model.generate(6, steps=steps, seed=1, **opts)
    masked = tokens  # the schedule, step by step: floor(N cos(pi/2 (s+1)/S)), at least one fewer each step
    expected = []
    for s in range(steps):
        expected.append(masked)
        masked = max(0, min(math.floor(tokens * math.cos(math.pi / 2 * (s + 1) / steps)), masked - 1))
        if masked == 0:
            break
    assert [(ids == model.mask_id).sum(dim=1).tolist() for ids in seen] == [[m] * 6 for m in expected]
    for before, after in zip(seen + [out], seen[1:] + [out]):
        known = before != model.mask_id
        assert torch.equal(after[known], before[known])  # a token once fixed stays as it was
    assert out.shape == (6, tokens) and out.min() >= 0 and out.max() < 11  # never the [MASK] id


def test_masked_after_is_the_cosine_schedule_and_reaches_zero():
    n = torch.tensor([49, 16, 2])
    assert masked_after(n, 0, 8).tolist() == [math.floor(x * math.cos(math.pi / 16)) for x in (49, 16, 2)]
    assert masked_after(n, 7, 8).tolist() == [0, 0, 0]


def test_the_choice_noise_is_annealed_by_the_schedules_ratio(monkeypatch):
    """Step s of S adds choice_temperature * (1 - (s+1)/S) Gumbel noise, as google-research/maskgit does: at step
    0 of 2 half of it. Greedy draws, fixed noise: position 0 is surer (log 0.9 against log 0.5), position 1 gets
    +0.4 noise; at scale 1 (= 2 * (1 - 1/2)) position 0 stays the more confident and is fixed first; at scale 2
    the noise would win."""
    monkeypatch.setattr(parallel_decode, "_gumbel", lambda shape, g, device: torch.tensor([[0.0, 0.4]]))
    logits = torch.log(torch.tensor([[[0.9, 0.1], [0.5, 0.5]]]))  # (1, 2, 2)
    fixed_first = []

    def on_fix(sampled, fixed):
        fixed_first.append(fixed.clone())

    decode(lambda ids, at: logits[at], torch.tensor([[2, 2]]), 2, 2, torch.Generator().manual_seed(0), temperature=0.0,
           choice_temperature=2.0, on_fix=on_fix)
    assert fixed_first[0].tolist() == [[True, False]]


def test_decode_fills_only_the_unknown_positions_of_a_partial_sequence():
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[3, 9, 9, 1, 9], [9, 9, 9, 9, 0]])  # 9: unknown

    def logits_fn(current, at):
        return torch.randn(current.shape[0], current.shape[1], 9, generator=g)[at]

    out = decode(logits_fn, ids, 9, 3, torch.Generator().manual_seed(1))
    assert (out != 9).all() and out[0, 0] == 3 and out[0, 3] == 1 and out[1, 4] == 0


def test_no_mask_id_is_ever_returned_even_where_the_head_prefers_nothing_else():
    model = make_prior(vocab=5, tokens=9)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 50.0]))  # all mass on the last real id
    for opts in (dict(), dict(temperature=0.0), dict(temperature=3.0, top_k=2), dict(top_p=0.5)):
        out = model.generate(32, seed=0, steps=4, **opts)
        assert out.max() < 5 and out.min() >= 0, opts
    assert (model.generate(8, temperature=0.0) == 4).all()


def test_the_same_seed_gives_the_same_tokens_and_others_differ():
    model = make_prior(vocab=20, tokens=16, num_masks=3)
    a = model.generate(8, seed=5, return_masks=True)
    b = model.generate(8, seed=5, return_masks=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], model.generate(8, seed=6))
    chunked = model.generate(8, seed=5, batch_size=3)
    assert torch.equal(chunked, model.generate(8, seed=5, batch_size=3))
    assert not chunked.is_inference()


def test_a_temperature_that_is_zero_in_float32_decodes_greedily():
    model = make_prior(vocab=20, tokens=16, num_masks=3)
    greedy = model.generate(8, temperature=0, mask_temperature=0, seed=0, return_masks=True)
    for tiny in (1e-300, 1e-45):  # 0 in float32, a denormal: without the greedy rule, 0/0 and NaN probabilities
        ids, masks = model.generate(8, temperature=tiny, mask_temperature=tiny, seed=0, return_masks=True)
        assert torch.equal(ids, greedy[0]) and torch.equal(masks, greedy[1])
    for top in (1e-12, 0.5):  # greedy keeps the most likely token whatever the nucleus
        ids = model.generate(8, temperature=1e-300, top_p=top, mask_temperature=0, seed=0)
        assert torch.equal(ids, greedy[0])
    flat = model.generate(64, temperature=1e30, seed=0)  # flat, not NaN
    assert flat.unique().numel() > 1 and flat.max() < 20 and flat.min() >= 0


def test_the_model_is_bidirectional():
    model = make_prior(vocab=13, tokens=7)
    x = torch.randint(0, 13, (2, 7))
    base = model(x)
    y = x.clone()
    y[:, 6] = (y[:, 6] + 1) % 13
    assert not torch.allclose(model(y)[:, 0], base[:, 0])  # the first position sees the last


def test_training_masks_at_least_45_percent_and_drops_a_tenth_of_the_labels():
    model = make_prior(vocab=13, tokens=16, num_classes=4, num_masks=3)
    tokens = torch.randint(0, 13, (4000, 16))
    masks = torch.randint(0, 3, (4000, 16))
    labels = torch.randint(0, 4, (4000,))
    ids, dropped, mask_ids, hidden = model.training_batch(tokens, labels, masks, torch.Generator().manual_seed(0))
    share = hidden.float().mean(dim=1)
    assert share.min() >= 0.45 and share.max() == 1.0
    assert 0.25 < (share == 8 / 16).float().mean() < 0.35  # cos(pi/2 u) < 0.45 for 30% of u: floored at 0.45
    assert torch.equal(ids == model.mask_id, hidden) and torch.equal(ids[~hidden], tokens[~hidden])
    assert torch.equal(mask_ids == 3, hidden) and torch.equal(mask_ids[~hidden], masks[~hidden])
    no_class = dropped == 4
    assert 0.08 < no_class.float().mean() < 0.12 and torch.equal(dropped[~no_class], labels[~no_class])
    for t in (1, 2, 3):  # short sequences too
        short = MaskGITPrior(MaskGITConfig(vocab_size=5, tokens=t, n_layer=1, n_head=1, n_embd=8))
        _, _, _, hidden = short.training_batch(torch.zeros(500, t, dtype=torch.long))
        assert (hidden.sum(dim=1) >= math.ceil(0.45 * t)).all()


def test_the_loss_counts_the_masked_positions_only():
    tokens = torch.randint(0, 13, (5, 7))
    hidden = torch.rand(5, 7) < 0.5
    hidden[:, 0] = True
    logits = torch.randn(5, 7, 13)
    changed = logits.clone()
    changed[~hidden] = torch.randn_like(changed[~hidden]) * 10  # anything at the visible positions
    assert masked_loss(logits, tokens, hidden) == masked_loss(changed, tokens, hidden)
    plain = torch.nn.functional.cross_entropy(logits[hidden], tokens[hidden])
    torch.testing.assert_close(masked_loss(logits, tokens, hidden), plain)
    smoothed = masked_loss(logits, tokens, hidden, label_smoothing=0.1)
    torch.testing.assert_close(smoothed, torch.nn.functional.cross_entropy(logits[hidden], tokens[hidden],
                                                                          label_smoothing=0.1))


@pytest.mark.parametrize("num_masks,num_classes", [(0, 0), (3, 0), (0, 4), (3, 4)])
def test_the_training_loss_takes_the_head_only_at_the_masked_positions_and_equals_the_full_one(num_masks, num_classes):
    torch.manual_seed(0)
    model = MaskGITPrior(MaskGITConfig(vocab_size=11, tokens=6, n_layer=1, n_head=2, n_embd=16, num_masks=num_masks,
                                       num_classes=num_classes, label_smoothing=0.1))
    tokens = torch.randint(0, 11, (9, 6))
    masks = torch.randint(0, 3, (9, 6)) if num_masks else None
    labels = torch.randint(0, 4, (9,)) if num_classes else None
    g = torch.Generator().manual_seed(3)
    ids, lab, mask_ids, hidden = model.training_batch(tokens, labels, masks, generator=g)
    full = model(ids, lab, mask_ids, tokens if num_masks else None)
    expected = masked_loss(full, tokens, hidden, masks, label_smoothing=0.1)
    torch.manual_seed(7)
    model.training_batch = lambda *a, **k: (ids, lab, mask_ids, hidden)  # the same positions hidden
    torch.testing.assert_close(model.loss(tokens, labels, masks), expected)
    at = model(ids, lab, mask_ids, tokens if num_masks else None, at=hidden)
    n = int(hidden.sum())
    assert (at[0] if num_masks else at).shape == (n, 11)


def train(model, data, labels=None, masks=None, steps=150, lr=1e-2) -> tuple[float, float]:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model.loss(data, labels, masks)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses[:5]) / 5, sum(losses[-10:]) / 10


def test_learns_class_patterns():
    torch.manual_seed(0)
    model = MaskGITPrior(MaskGITConfig(vocab_size=16, tokens=8, n_layer=2, n_head=2, n_embd=32, num_classes=4,
                                       label_smoothing=0.0))
    patterns = torch.randint(0, 16, (4, 8))  # one fixed sequence per class
    labels = torch.arange(4).repeat(16)
    first, last = train(model, patterns[labels], labels)
    assert first > 2.0 and last < 0.3
    assert torch.equal(model.generate(4, temperature=0, labels=torch.arange(4)), patterns)


def test_guidance_moves_the_logits_by_cond_minus_uncond():
    model = make_prior(vocab=13, tokens=7, num_classes=3)
    plain = model.generate(16, seed=2, labels=1)
    assert not torch.equal(plain, model.generate(16, seed=2, labels=1, guidance_scale=3.0))
    with torch.no_grad():
        model.wce.weight.copy_(model.wce.weight[1].expand_as(model.wce.weight))  # "no class" = class 1
    plain = model.generate(16, seed=2, labels=1)
    assert torch.equal(plain, model.generate(16, seed=2, labels=1, guidance_scale=3.0))  # cond - uncond = 0


def test_mask_head_learns_masks_that_follow_the_codes():
    torch.manual_seed(0)
    model = MaskGITPrior(MaskGITConfig(vocab_size=6, tokens=4, n_layer=2, n_head=2, n_embd=32, num_masks=3,
                                       label_smoothing=0.0))
    tokens = torch.randint(0, 6, (256, 4))
    masks = tokens % 3  # each code has its own mask
    train(model, tokens, masks=masks, steps=200)
    ids, drawn = model.generate(64, seed=0, return_masks=True, mask_temperature=0.0)
    assert drawn.shape == ids.shape and drawn.max() < 3
    assert (drawn == ids % 3).float().mean() > 0.95


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(steps=8), dict(steps="3"), dict(steps=2.0),
                                    dict(steps=True), dict(choice_temperature=-1.0),
                                    dict(choice_temperature=math.inf), dict(guidance_scale=1.0),
                                    dict(temperature=-1.0), dict(top_k=0), dict(labels=1)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_prior(tokens=7).generate(2, **kwargs)


def test_bad_config():
    with pytest.raises(ConfigError, match="min_mask_ratio"):
        MaskGITConfig(min_mask_ratio=0.0)
    with pytest.raises(ConfigError, match="class_dropout"):
        MaskGITConfig(class_dropout=1.5)


def test_generate_restores_training_mode():
    model = make_prior(dropout=0.1).train()
    a, b = model.generate(3, seed=0), model.generate(3, seed=0)
    assert model.training and torch.equal(a, b)  # dropout is off while sampling


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_sampling_is_seeded_and_in_range():
    model = make_prior(vocab=20, tokens=16, num_classes=3, num_masks=3).cuda()
    a = model.generate(64, seed=3, labels=1, guidance_scale=1.5, return_masks=True)
    b = model.generate(64, seed=3, labels=1, guidance_scale=1.5, return_masks=True)
    assert a[0].is_cuda and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].max() < 20 and a[1].max() < 3
    tokens = torch.randint(0, 20, (8, 16), device="cuda")
    loss = model.train().loss(tokens, torch.zeros(8, dtype=torch.long, device="cuda"),
                              torch.randint(0, 3, (8, 16), device="cuda"))
    loss.backward()
    assert torch.isfinite(loss)
