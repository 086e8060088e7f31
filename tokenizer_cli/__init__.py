"""mvq: small-latent image tokenizers (VQ, FSQ, Masked VQ) and a Transformer prior over their tokens.

The Python API is `Pipeline` (see tokenizer_cli/pipeline.py); the `mvq` command is a thin shell over it.
Importing the package does not import torch: that happens when a model is loaded.
"""

from .version import __version__ as __version__  # re-exported

__all__ = ["Pipeline", "PictureWarning", "Tokens"]


def __getattr__(name: str):
    if name in __all__:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'tokenizer_cli' has no attribute {name!r}")
