from .autoencoder import Tokenizer
from .maskgit import MaskGITPrior
from .prior import Prior

__all__ = ["MaskGITPrior", "Prior", "Tokenizer"]
