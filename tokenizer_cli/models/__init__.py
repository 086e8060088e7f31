from .autoencoder import Tokenizer
from .prior import Prior

__all__ = ["Prior", "Tokenizer"]
