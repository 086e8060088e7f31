"""The shipped models in weights/ are real trained models that load offline and reconstruct real images."""

from pathlib import Path

import numpy as np
import pytest
import torch

from tokenizer_cli.data import iter_sources, load_source
from tokenizer_cli.hub import DEFAULT_MODEL, read_config, shipped_models, shipped_root
from tokenizer_cli.pipeline import load_pipeline

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# examples folder: image size, channels, and the test images of the data the models of that folder were measured on
SHAPES = {"fashion": (28, 1, 10_000), "clipart": (64, 3, 696), "pictures": (64, 3, 7_655)}
TOKENIZERS = [(n, folder) for n, cfg in ((n, read_config(shipped_root() / n)) for n in shipped_models())
              for folder, shape in SHAPES.items()
              if (cfg.tokenizer.image_size, cfg.tokenizer.channels, cfg.metrics.images) == shape]


def example_batch(folder: str) -> torch.Tensor:
    size, channels, _ = SHAPES[folder]
    return torch.from_numpy(np.stack([load_source(s, size, channels) for s in iter_sources([EXAMPLES / folder])]))


def test_every_shipped_model_has_examples_of_its_image_shape():
    assert sorted(n for n, _ in TOKENIZERS) == sorted(shipped_models())


def test_default_model_is_shipped_and_serves_colour_pictures():
    assert DEFAULT_MODEL in shipped_models()
    tok = read_config(shipped_root() / DEFAULT_MODEL).tokenizer
    assert (tok.image_size, tok.channels) == (64, 3)


@pytest.mark.parametrize("name, examples", TOKENIZERS)
def test_shipped_tokenizer_reconstructs_real_images(name, examples):
    pipe = load_pipeline(name)
    cfg = pipe.config
    assert cfg.metrics.images == SHAPES[examples][2] and cfg.metrics.mse < 0.2
    assert (pipe.folder / "README.md").read_text().count("mse") >= 1
    x = example_batch(examples)
    ids, masks = pipe.tokenizer.encode(x, with_masks=True)
    assert ids.shape == (len(x), cfg.tokenizer.tokens)
    mse = (pipe.tokenizer.decode(ids, masks) - x).pow(2).mean().item()
    assert mse < 0.2, f"{name} reconstructs the examples with MSE {mse:.3f}: not a trained model?"
    untrained = type(pipe.tokenizer)(pipe.tokenizer.cfg).eval()
    assert mse < 0.5 * (untrained.decode(*untrained.encode(x, with_masks=True)) - x).pow(2).mean().item()
    if pipe.prior is not None:
        assert pipe.prior.generate(3, seed=0).shape == (3, cfg.tokenizer.tokens)


def test_each_image_shape_gets_the_feature_net_trained_on_it():
    from tokenizer_cli.classifier import DEFAULT_FEATURE_NET, feature_net_for, load_feature_net

    assert feature_net_for(28, 1) == DEFAULT_FEATURE_NET == "fd-fmnist-classifier"
    assert feature_net_for(64, 3) == "fd-pictures-classifier"  # of the two 64x64 colour nets, the broader data's
    assert feature_net_for(32, 3) == DEFAULT_FEATURE_NET  # none made for it: the default, resized
    net, info = load_feature_net("fd-clipart-classifier")
    assert info["test_accuracy"] > 0.6 and len(info["classes"]) == info["config"]["num_classes"] == 22
    assert net(example_batch("clipart")).shape == (12, 22)
    net, info = load_feature_net("fd-pictures-classifier")
    assert info["classes"] == ["photo", "painting", "texture", "render", "clip-art", "sprite", "icon"]
    assert info["test_accuracy"] > 0.6 and net(example_batch("pictures")).shape == (11, 7)


# (tokenizer_id, config_hash) of every shipped model as mvq 0.2.0 computed them from config.json format 2 (one
# flat quantizer record for every kind), before each kind had its own record: token files record them, and
# `mvq decode` refuses token files whose tokenizer_id it does not find. The config hash also covers the priors,
# so a prior added to a folder changes it (and only it): those are marked.
IDENTITIES = {
    "fsq-fmnist-t2": ("a18868cf48ca7cdf", "c1886a7226b616e8"), "fsq-fmnist-t5": ("c0f53e2db33708cd", "dcc63035ffbfc303"),
    "mvq-fmnist-t2": ("b1ab2effaeef209f", "e041767a1a97e16f"), "mvq-fmnist-t5": ("53a23a9f65ae75d8", "62353a1bf608bf8e"),
    "mvq-fmnist-t8": ("a2f0e8cac51a3f29", "3942f42ee39a84a6"),  # config hash: a MaskGIT prior added in 0.3
    "mvq-joint-fmnist-t2": ("67beff504c0bc23d", "adc6c47269b81e8c"),
    "mvq-joint-fmnist-t5": ("e8ac47e56f62e384", "aed09e506a7dc24b"),
    "vq-fmnist-grid49": ("4cac9485272a50a6", "c5cb6655218fef2f"),  # config hash: a MaskGIT prior added in 0.3
    "vq-fmnist-k16-t2": ("5a1b2edf8b8c6996", "12e64433a7833278"),
    "vq-fmnist-k16-t5": ("2419a04abd968630", "91ab6a79da0f248b"),
    "vq-fmnist-t16": ("a81329bf3137a827", "e41552ce759db5bc"),  # config hash: a MaskGIT prior added in 0.3
    # shipped in format 3 (one record per quantizer kind), as computed when they were shipped
    "fsq-pictures-t16": ("e87f8d345ccd512d", "cff228aac57f2434"),
    "fsq-pictures-t64": ("aa6ef923e52dfe66", "0fe9549d14ca5cbe"),  # fine-tuned 492 more steps in 0.3
    "fsq-fmnist-grid49": ("35eb568ffa838a3a", "4c52e6c5d4fc9d93"),  # shipped in 0.3 with both priors
    # the picture-set comparison's K=16 pair (results/pictures)
    "mvq-pictures-t2": ("5ab7ef20a0ae03a1", "eece3511c5067d97"),
    "mvq-pictures-t5": ("fae9103b7cf501b4", "2071242b4680015d"),
    "vq-pictures-k16-t2": ("6f4a78043d2b644d", "ac320670c3efe35e"),
    "vq-pictures-k16-t5": ("f7bf4c9045bcc2d9", "5ec1cd3b9cefd9ca"),
}


def test_shipped_models_keep_the_identities_their_token_files_record():
    assert sorted(IDENTITIES) == sorted(shipped_models())
    for name, identity in IDENTITIES.items():
        pipe = load_pipeline(name, load_prior=False)
        assert (pipe.tokenizer_id, pipe.config_hash) == identity, name
