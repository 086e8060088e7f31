from .autoencoder import Tokenizer

__all__ = ["Tokenizer"]
