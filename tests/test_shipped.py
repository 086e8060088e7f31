"""The shipped models in weights/ are real trained models that load offline and reconstruct real images."""

from pathlib import Path

import numpy as np
import pytest
import torch

from tokenizer_cli.data import iter_sources, load_source
from tokenizer_cli.hub import DEFAULT_MODEL, read_config, shipped_models, shipped_root
from tokenizer_cli.pipeline import load_pipeline

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SHAPES = {"fashion": (28, 1, 10_000), "clipart": (64, 3, 696)}  # examples folder: image size, channels, test images
TOKENIZERS = [(n, folder) for n, tok in ((n, read_config(shipped_root() / n).tokenizer) for n in shipped_models())
              for folder, (size, ch, _) in SHAPES.items() if (tok.image_size, tok.channels) == (size, ch)]


def example_batch(folder: str) -> torch.Tensor:
    size, channels, _ = SHAPES[folder]
    return torch.from_numpy(np.stack([load_source(s, size, channels) for s in iter_sources([EXAMPLES / folder])]))


def test_every_shipped_model_has_examples_of_its_image_shape():
    assert sorted(n for n, _ in TOKENIZERS) == sorted(shipped_models())


def test_default_model_is_shipped():
    assert DEFAULT_MODEL in shipped_models()


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
    assert feature_net_for(64, 3) == "fd-clipart-classifier"
    assert feature_net_for(32, 3) == DEFAULT_FEATURE_NET  # none made for it: the default, resized
    net, info = load_feature_net("fd-clipart-classifier")
    assert info["test_accuracy"] > 0.6 and len(info["classes"]) == info["config"]["num_classes"] == 22
    logits = net(example_batch("clipart"))
    assert logits.shape == (12, 22)
