"""The shipped models in weights/ are real trained models that load offline and reconstruct real images."""

from pathlib import Path

import numpy as np
import pytest
import torch

from tokenizer_cli.data import iter_sources, load_source
from tokenizer_cli.hub import DEFAULT_MODEL, load_pipeline, read_config, shipped_models, shipped_root

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "fashion"
TOKENIZERS = [n for n in shipped_models() if "quantizer" in read_config(shipped_root() / n)["tokenizer"]]


def example_batch() -> torch.Tensor:
    return torch.from_numpy(np.stack([load_source(s, 28, 1) for s in iter_sources([EXAMPLES])]))


def test_default_model_is_shipped():
    assert DEFAULT_MODEL in shipped_models()


@pytest.mark.parametrize("name", TOKENIZERS)
def test_shipped_tokenizer_reconstructs_real_images(name):
    pipe = load_pipeline(name)
    cfg = pipe.config
    assert cfg["metrics"]["images"] == 10_000 and cfg["metrics"]["mse"] < 0.2
    assert (pipe.folder / "README.md").read_text().count("mse") >= 1
    x = example_batch()
    ids = pipe.tokenizer.encode(x)
    assert ids.shape == (len(x), cfg["tokenizer"]["tokens"])
    mse = (pipe.tokenizer.decode(ids) - x).pow(2).mean().item()
    assert mse < 0.2, f"{name} reconstructs the examples with MSE {mse:.3f}: not a trained model?"
    untrained = type(pipe.tokenizer)(pipe.tokenizer.cfg).eval()
    assert mse < 0.5 * (untrained.decode(untrained.encode(x)) - x).pow(2).mean().item()
    if pipe.prior is not None:
        assert pipe.prior.generate(3, seed=0).shape == (3, cfg["tokenizer"]["tokens"])
