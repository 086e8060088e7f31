"""MVQ with sampled masks (the paper's reading): a token is a code id, its mask a stored or drawn hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokenizer_cli.config import ConfigError, QuantizerConfig, TokenizerConfig, tokenizer_config_from_dict
from tokenizer_cli.models import Tokenizer
from tokenizer_cli.quantizers import MVQ
from tokenizer_cli.tokenfile import make_manifest, save_tokens, load_tokens, load_masks
from tokenizer_cli.data import InputError


def trained_mvq(**kw) -> MVQ:
    torch.manual_seed(0)
    q = MVQ(num_codes=6, dim=4, mask_bits=3, **kw)
    q.train()
    q(torch.randn(1, 64, 4))  # data init
    return q


def test_token_ids_lie_in_the_code_range_and_masks_in_the_mask_range():
    q = trained_mvq()
    q.eval()
    out = q(torch.randn(3, 50, 4))
    assert q.vocab_size == 6
    assert out.indices.min() >= 0 and out.indices.max() < 6
    assert out.masks.shape == out.indices.shape and out.masks.max() < q.num_masks == 7


def test_encoding_takes_the_nearest_hypothesis_and_stored_masks_decode_it_exactly():
    q = trained_mvq()
    q.eval()
    z = torch.randn(2, 30, 4)
    out = q(z)
    points = q.hypotheses().reshape(-1, 4)
    nearest = torch.cdist(z.reshape(-1, 4), points).argmin(1)
    assert torch.equal(out.indices.reshape(-1) * q.num_masks + out.masks.reshape(-1), nearest)
    assert torch.allclose(q.indices_to_codes(out.indices, out.masks), out.z_q, atol=1e-6)


def test_without_masks_two_seeds_draw_different_hypotheses_of_the_same_code():
    q = trained_mvq()
    ids = torch.full((4, 8), 3)
    draw = lambda seed: q.sample_masks(ids, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))
    a = q.indices_to_codes(ids, generator=torch.Generator().manual_seed(1))
    b = q.indices_to_codes(ids, generator=torch.Generator().manual_seed(2))
    h = q.hypotheses()[3]  # (M, D): every drawn latent is one of code 3's hypotheses
    for latents in (a, b):
        gap = (latents.reshape(-1, 1, 4) - h[None]).abs().amax(-1).min(1).values  # to the nearest of code 3's
        assert gap.max() < 1e-6
    assert not torch.allclose(a, b)


def test_learned_mask_distribution_follows_the_winners_and_temperature_zero_takes_the_mode():
    q = trained_mvq()
    with torch.no_grad():
        q.mask_counts.fill_(0.01)
        q.mask_counts[2, 5] = 10.0
    ids = torch.full((200, 1), 2)
    drawn = q.sample_masks(ids, torch.Generator().manual_seed(0))
    assert (drawn == 5).float().mean() > 0.9
    assert torch.all(q.sample_masks(ids, temperature=0.0) == 5)
    uniform = q.sample_masks(ids, torch.Generator().manual_seed(0), sampling="uniform")
    assert uniform.unique().numel() == q.num_masks


def test_training_counts_winning_masks_per_code():
    q = trained_mvq(subset_ratio=1.0)
    z = q.hypotheses().detach()[1, 4].expand(50, 4)[None]  # every latent on code 1, mask 4
    before = q.mask_counts[1, 4].item()
    q(z)
    assert q.mask_counts[1, 4].item() > before
    assert q.mask_probs()[1].argmax().item() == 4


@pytest.mark.parametrize("gradient", ["winner", "straight-through"])
def test_only_the_winner_receives_gradient(gradient):
    torch.manual_seed(0)
    q = MVQ(num_codes=6, dim=4, mask_bits=2, subset_ratio=1.0, gradient=gradient)
    q.initted.fill_(True)  # keep the random codebook
    q.train()
    z = (q.hypotheses().detach()[2, 1][None, None] + 0.01).requires_grad_(True)  # a latent next to code 2
    out = q(z)
    assert out.indices.item() == 2 and out.masks.item() == 1
    (out.z_q.sum() + out.loss).backward()
    rows = q.codebook.grad.abs().sum(1)
    assert rows[2] > 0 and torch.all(rows[[0, 1, 3, 4, 5]] == 0)
    assert z.grad.abs().sum() > 0  # the encoder gets the straight-through gradient either way


def test_decoder_gradient_reaches_the_mask_network_only_through_the_winner():
    """With gradient 'winner' a loss on z_q alone trains the mask network; straight-through cuts it."""
    grads = {}
    for gradient in ("winner", "straight-through"):
        torch.manual_seed(0)
        q = MVQ(num_codes=6, dim=4, mask_bits=2, gradient=gradient)
        q.initted.fill_(True)
        q.train()
        out = q(torch.randn(1, 10, 4, requires_grad=True))
        out.z_q.pow(2).sum().backward()  # a stand-in for the decoder's loss
        grads[gradient] = sum(p.grad.abs().sum().item() for p in q.out.parameters() if p.grad is not None)
    assert grads["winner"] > 0 and grads["straight-through"] == 0


@pytest.mark.parametrize("ratio,expected", [(0.5, 4), (0.25, 2), (1.0, 7), (0.01, 1)])
def test_mask_subset_has_the_configured_size(ratio, expected):
    torch.manual_seed(0)
    q = MVQ(num_codes=1, dim=4, mask_bits=3, subset_ratio=ratio)
    assert q.subset_size == expected
    q.initted.fill_(True)
    q.train()
    z = q.hypotheses().detach()[0].repeat(300, 1)[None]  # every mask's own hypothesis, 300 times each
    out = q(z)
    won_own = (out.masks.reshape(-1) == torch.arange(7).repeat(300)).float().mean().item()
    assert abs(won_own - expected / 7) < 0.06, "a hypothesis wins its own latent only when its mask is in the subset"


def test_one_mask_per_image_is_shared_by_its_tokens():
    q = trained_mvq(mask_scope="image")
    z = torch.randn(5, 4, 4)
    q.eval()
    out = q(z)
    assert torch.all(out.masks == out.masks[:, :1])
    drawn = q.sample_masks(out.indices, torch.Generator().manual_seed(0))
    assert torch.all(drawn == drawn[:, :1])
    q.train()
    train_masks = q(z).masks
    assert torch.all(train_masks == train_masks[:, :1])


def test_mhd_form_hypotheses_are_not_residuals_of_the_code():
    torch.manual_seed(0)
    q = MVQ(num_codes=3, dim=4, mask_bits=2, form="mhd")
    with torch.no_grad():
        before = q.hypotheses().clone()
        q.codebook.add_(100.0)  # a residual form would move every hypothesis by 100
    assert (q.hypotheses() - before).abs().max() < 50


def test_tokenizer_encode_decode_round_trip_with_masks():
    torch.manual_seed(0)
    cfg = TokenizerConfig(tokens=3, base_channels=4, quantizer=QuantizerConfig(kind="mvq", dim=4, num_codes=5, mask_bits=2))
    tok = Tokenizer(cfg)
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    tok.train()
    tok(x)
    tok.eval()
    ids, masks = tok.encode(x, with_masks=True)
    assert tok.vocab_size == 5 and tok.num_masks == 3
    assert torch.equal(tok.decode(ids, masks), tok.decode(ids, masks))
    with torch.no_grad():
        direct = tok.decode_latents(tok.quantizer(tok.latents(x)).z_q).clamp(-1, 1)
    assert torch.allclose(tok.decode(ids, masks), direct, atol=1e-5)


def test_old_format_mvq_is_read_as_joint_tokens():
    old = {"tokenizer": {"quantizer": {"kind": "mvq", "codebook_size": 16, "mask_bits": 4}}}
    cfg = tokenizer_config_from_dict(old["tokenizer"], format_version=1)
    assert cfg.quantizer.kind == "mvq-joint" and cfg.quantizer.num_codes == 16 and cfg.quantizer.vocab_size == 240
    assert tokenizer_config_from_dict({"quantizer": {"kind": "mvq"}}).quantizer.vocab_size == 16


def test_mask_files_are_refused_when_they_do_not_fit(tmp_path):
    ids = np.array([[1, 2], [0, 3]])
    manifest = make_manifest("m", "h", 2, 4, ["a", "b"], [], tokenizer_id="x", num_masks=3)
    with pytest.raises(InputError, match="mask 3 outside"):
        save_tokens(tmp_path / "t.npy", ids, manifest, overwrite=False, masks=np.array([[0, 3], [1, 1]]))
    with pytest.raises(InputError, match="shape"):
        save_tokens(tmp_path / "t.npy", ids, manifest, overwrite=False, masks=np.zeros((2, 3), dtype=int))
    assert not (tmp_path / "t.npy").exists() and not (tmp_path / "t.masks.npy").exists()
    save_tokens(tmp_path / "t.npy", ids, manifest, overwrite=False, masks=np.array([[0, 2], [1, 1]]))
    tokens, meta = load_tokens(tmp_path / "t.npy")
    assert meta["masks_file"] == "t.masks.npy" and meta["num_masks"] == 3
    assert np.array_equal(load_masks(tmp_path / "t.npy", meta), [[0, 2], [1, 1]])
    np.save(tmp_path / "t.masks.npy", np.array([[0, 2, 1], [1, 1, 1]]))  # a mask file of another run
    from tokenizer_cli.tokenfile import validate_masks

    with pytest.raises(InputError, match="shape"):
        validate_masks(load_masks(tmp_path / "t.npy", meta), tokens.shape, 3)


def test_config_values_out_of_range_are_refused_before_anything_is_built():
    for bad in ({"mask_bits": 40}, {"num_codes": 0}, {"kind": "mvq", "subset_ratio": 0.0},
                {"mask_scope": "pixel"}, {"dim": "16"}, {"levels": [1, 2], "kind": "fsq"}):
        with pytest.raises(ConfigError):
            QuantizerConfig(**bad)
    with pytest.raises(ConfigError, match="res_blocks"):
        TokenizerConfig(res_blocks=10_000_000)
