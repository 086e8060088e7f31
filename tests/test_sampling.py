"""Drawing ids from probabilities (models/sampling.categorical), what both priors sample with."""

import pytest
import torch

from tokenizer_cli.config import MaskGITConfig
from tokenizer_cli.models import MaskGITPrior
from tokenizer_cli.models.sampling import categorical


@pytest.mark.parametrize("vocab, block", [(5, 2), (300, 128), (1000, 128), (7, 128)])
def test_categorical_draws_in_proportion_and_never_a_zero_probability_id(vocab, block):
    g = torch.Generator().manual_seed(0)
    p = torch.zeros(vocab)
    p[1], p[3], p[vocab - 1] = 0.2, 1.2, 0.6  # not normalised; the last id sits in a padded block
    ids = categorical(p.repeat(100_000, 1), g, block=block)
    counts = torch.bincount(ids, minlength=vocab).double() / len(ids)
    assert set(ids.unique().tolist()) == {1, 3, vocab - 1}
    torch.testing.assert_close(counts[[1, 3, vocab - 1]], torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64),
                               atol=0.006, rtol=0)


def test_categorical_is_seeded_and_rows_are_independent():
    probs = torch.softmax(torch.randn(64, 500), dim=-1)
    a = categorical(probs, torch.Generator().manual_seed(3))
    assert torch.equal(a, categorical(probs, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, categorical(probs, torch.Generator().manual_seed(4)))
    one_hot = torch.eye(500)[torch.arange(64) * 7]  # all mass on one id a row
    assert torch.equal(categorical(one_hot, torch.Generator().manual_seed(0)), torch.arange(64) * 7)


def test_maskgit_logits_at_some_positions_are_those_of_the_whole_pass():
    torch.manual_seed(0)
    model = MaskGITPrior(MaskGITConfig(vocab_size=13, tokens=9, n_layer=2, n_head=2, n_embd=16, num_masks=3,
                                       num_classes=2)).eval()
    ids = torch.randint(0, 14, (4, 9))
    masks, codes, labels = torch.randint(0, 4, (4, 9)), torch.randint(0, 13, (4, 9)), torch.tensor([0, 1, 2, 1])
    at = torch.rand(4, 9) < 0.5
    full, full_masks = model(ids, labels, masks, codes)
    some, some_masks = model(ids, labels, masks, codes, at=at)
    torch.testing.assert_close(some, full[at])
    torch.testing.assert_close(some_masks, full_masks[at])


@pytest.mark.parametrize("kind", ["ar", "maskgit"])
def test_generate_reports_each_batch_and_samples_as_without_it(kind):
    from conftest import tiny_maskgit_prior, tiny_prior

    prior = tiny_prior(7, 5) if kind == "ar" else tiny_maskgit_prior(7, 5)
    done = []
    ids = prior.generate(10, seed=2, batch_size=4, on_batch=done.append)
    assert done == [4, 4, 2]
    assert torch.equal(ids, prior.generate(10, seed=2, batch_size=4))


def test_categorical_refuses_nan_and_empty_rows_as_multinomial_does():
    g = torch.Generator().manual_seed(0)
    for bad in (torch.tensor([[0.2, float("nan"), 0.3]]), torch.zeros(2, 5), torch.tensor([[1.0, float("inf")]])):
        with pytest.raises(ValueError, match="finite, non-negative and not all zero"):
            categorical(bad, g)
    assert categorical(torch.ones(0, 7), g).shape == (0,)
