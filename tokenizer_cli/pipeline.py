"""The Python API: a tokenizer and its prior, loaded and saved like a Hugging Face Hub model.

    from tokenizer_cli import Pipeline

    pipe = Pipeline.from_pretrained("mvq-fmnist-t2")        # shipped name, local folder or owner/name[@rev]
    tokens = pipe.encode(images)                            # PIL images, uint8 arrays or a float tensor
    images = pipe.decode(tokens)                            # PIL images (exact with MVQ's stored masks)
    samples = pipe.sample(16, temperature=1.0, seed=0)      # PIL images from the prior
    pipe.save_pretrained("my-model"); pipe.push_to_hub("me/my-model", private=True)

The names and behaviour follow huggingface_hub's ModelHubMixin (config from dataclasses, safetensors,
strict loading, revision, offline cache); see `from_pretrained` for why the mixin itself is not used.
Every `mvq` command is a thin shell over this class and the library functions it calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

    from .config import EvalResult, ModelConfig
    from .models import Prior, Tokenizer


@dataclass
class Tokens:
    """What `encode` returns: token ids and, for MVQ with sampled masks, the mask of every token."""

    ids: np.ndarray  # (N, T) int64 token ids in [0, vocab_size)
    masks: np.ndarray | None = None  # (N, T) int64 masks in [0, num_masks), or None

    def __len__(self) -> int:
        return len(self.ids)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    import torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Pipeline:
    """A tokenizer (images <-> tokens) and, optionally, a prior over its tokens, with their config.json."""

    def __init__(self, tokenizer: Tokenizer, prior: Prior | None = None, config: ModelConfig | None = None,
                 source: str = "", folder: Path | None = None):
        from .config import ModelConfig

        self.tokenizer, self.prior = tokenizer.eval(), prior.eval() if prior is not None else None
        self.config = config if config is not None else ModelConfig(tokenizer.cfg, prior.cfg if prior else None)
        self.source, self.folder = source, folder

    # ------------------------------------------------------------ loading and saving

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, revision: str | None = None,
                        device: str | torch.device = "auto", need_prior: bool = False,
                        load_prior: bool = True) -> Pipeline:
        """Load a model folder: a local path, a default shipped with mvq (`mvq models`), or a Hub repo id
        `owner/name` (revision as `revision=` or `owner/name@rev`), through huggingface_hub's cache
        (HF_HUB_OFFLINE and HF_TOKEN honoured). Weights load strictly from safetensors, never a pickle;
        config.json is checked field by field before anything is allocated.

        ModelHubMixin.from_pretrained is not used: mvq resolves shipped names between local folders and
        the Hub, loads two modules from one folder, and validates the config before building either.
        load_prior=False loads the tokenizer alone (to train a new prior, say)."""
        from .hub import BadCheckpoint, load_weights, read_config, resolve_model
        from .models import Prior, Tokenizer

        name = str(name_or_path)
        if revision is not None:
            name = f"{name.split('@', 1)[0]}@{revision}"
        folder = resolve_model(name)
        cfg = read_config(folder)
        tokenizer = Tokenizer(cfg.tokenizer)
        load_weights(tokenizer, folder / "tokenizer.safetensors")
        prior = None
        if cfg.prior is not None and load_prior:
            prior = Prior(cfg.prior)
            load_weights(prior, folder / "prior.safetensors")
        elif need_prior:
            raise BadCheckpoint(f"model {name!r} has no prior (train one with `mvq train prior`)")
        return cls(tokenizer, prior, cfg, name, folder).to(device)

    def to(self, device: str | torch.device) -> Pipeline:
        dev = resolve_device(device)
        self.tokenizer.to(dev)
        if self.prior is not None:
            self.prior.to(dev)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.tokenizer.parameters()).device

    def save_pretrained(self, folder: str | Path, card: str | None = None) -> Path:
        """Write config.json (with this model's training and evaluation records), tokenizer.safetensors,
        prior.safetensors (if any) and README.md (the model card, or `card`)."""
        from .hub import save_pipeline

        c = self.config
        records = {"training": c.training, "metrics": c.metrics}
        if self.prior is not None or c.prior is None:
            records.update(prior_training=c.prior_training, eval=c.eval)
        # else (loaded without its prior): the folder's own prior records stay with its prior, which stays
        # only beside this same tokenizer (save_pipeline)
        return save_pipeline(Path(folder), self.tokenizer, self.prior, card=card, **records)

    def push_to_hub(self, repo_id: str, private: bool = False, revision: str | None = None) -> str:
        """Save to a temporary folder and upload it with huggingface_hub; returns the commit URL."""
        import tempfile

        from .hub import push_folder

        with tempfile.TemporaryDirectory() as tmp:
            return push_folder(self.save_pretrained(Path(tmp) / repo_id.split("/")[-1]), repo_id, private, revision)

    # ------------------------------------------------------------ measuring

    def evaluate(self, data: str = "fashion-mnist", limit: int | None = None, feature_net: str = "auto",
                 batch_size: int = 500, seed: int = 0) -> EvalResult:
        """What `mvq eval` measures (reconstruction FD, MSE, PSNR, SSIM, codebook use, generation FD of the prior
        on as many samples as test images), as an EvalResult; nothing is written."""
        from .evaluate import evaluate_pipeline

        return evaluate_pipeline(self, data, limit, feature_net, batch_size, seed)

    def explore(self, code: int, image: Any = None, blends: Sequence[tuple[int, int]] = (), steps: int = 8,
                draws: int = 8) -> np.ndarray:
        """What `mvq explore` draws, as a uint8 grid image: code `code` under every mask (see explore.mask_grid)."""
        from .explore import mask_grid

        return mask_grid(self, code, image, blends, steps, draws)

    # ------------------------------------------------------------ identity

    @property
    def config_hash(self) -> str:
        return self.config.hash

    @property
    def tokenizer_id(self) -> str:
        """What token files record to name the tokenizer that wrote them: a hash of its config and weights
        (not of the prior, so a retrained prior leaves the tokens valid)."""
        if not hasattr(self, "_tokenizer_id"):
            from .hub import tokenizer_digest

            self._tokenizer_id = tokenizer_digest(self.tokenizer)
        return self._tokenizer_id

    # ------------------------------------------------------------ images <-> tokens

    def images_to_tensor(self, images: Any) -> torch.Tensor:
        """PIL images, uint8 arrays ((N,) H, W[, C]) or a float tensor (N, C, H, W) in [-1, 1] -> the model's
        float input (N, C, S, S); other sizes and modes are converted as `mvq encode` converts files."""
        import torch
        from PIL import Image

        from .data import InputError
        from .images import pil_to_float

        cfg = self.tokenizer.cfg
        if isinstance(images, torch.Tensor) and images.is_floating_point():
            want = (cfg.channels, cfg.image_size, cfg.image_size)
            if images.dim() != 4 or tuple(images.shape[1:]) != want:
                raise InputError(f"a float tensor must have shape (N, {', '.join(map(str, want))}), "
                                 f"got {tuple(images.shape)}")
            return images.to(self.device)
        if isinstance(images, Image.Image):
            images = [images]
        elif isinstance(images, (np.ndarray, torch.Tensor)):
            arr = np.asarray(images.cpu() if isinstance(images, torch.Tensor) else images)
            if arr.dtype != np.uint8:
                raise InputError(f"image arrays must be uint8 (0..255), got {arr.dtype}; floats go in as a tensor")
            if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4)):
                arr = arr[None]  # one image: (H, W) grey or (H, W, 3|4) colour; (N, H, W) is a grey batch
            if arr.ndim not in (3, 4):
                raise InputError(f"image arrays must be (H, W), (H, W, C), (N, H, W) or (N, H, W, C), got {arr.shape}")
            images = [Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a) for a in arr]
        arrays = [pil_to_float(img, cfg.image_size, cfg.channels) for img in images]
        if not arrays:
            raise InputError("no images given")
        return torch.from_numpy(np.stack(arrays)).to(self.device)

    def encode(self, images: Any, batch_size: int = 256) -> Tokens:
        """Token ids (N, T) of images, and the mask of every token where the model has masks."""
        import torch

        x = self.images_to_tensor(images)
        ids, masks = [], []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                i, m = self.tokenizer.encode(x[start : start + batch_size], with_masks=True)
                ids.append(i.cpu().numpy())
                if m is not None:
                    masks.append(m.cpu().numpy())
        return Tokens(np.concatenate(ids), np.concatenate(masks) if masks else None)

    def decode(self, tokens: Tokens | np.ndarray | Sequence, masks: np.ndarray | None = None, seed: int | None = 0,
               mask_temperature: float = 1.0, mask_sampling: str = "learned", output: str = "pil",
               batch_size: int = 256):
        """Images for token rows (N, T): a list of PIL images, or a uint8 array (output="numpy"), or a float
        tensor in [-1, 1] (output="tensor"). MVQ with sampled masks uses the masks of `tokens` (or `masks`)
        and draws them, seeded, where there are none."""
        from .inference import decode_tokens
        from .tokenfile import validate_masks, validate_tokens

        if isinstance(tokens, Tokens):
            tokens, masks = tokens.ids, tokens.masks if masks is None else masks
        tok = self.tokenizer
        ids = validate_tokens(np.asarray(tokens), tok.tokens_per_image, tok.vocab_size)
        if masks is not None and tok.num_masks:
            masks = validate_masks(np.asarray(masks), ids.shape, tok.num_masks)
        batches = decode_tokens(tok, ids, masks, batch_size, self.device, seed=seed,
                                mask_temperature=mask_temperature, mask_sampling=mask_sampling)
        return _images_out(np.concatenate(list(batches)), output)

    # ------------------------------------------------------------ sampling

    def sample_tokens(self, n: int, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                      seed: int | None = 0, label: int | None = None, mask_temperature: float = 1.0,
                      mask_sampling: str = "prior") -> Tokens:
        """n token rows from the prior (with a KV cache), and drawn masks for MVQ with sampled masks."""
        from .hub import BadCheckpoint
        from .inference import sample_tokens

        if self.prior is None:
            raise BadCheckpoint(f"model {self.source!r} has no prior (train one with `mvq train prior`)")
        ids, masks = sample_tokens(self.prior, self.tokenizer, n, temperature, top_k, top_p, seed, label,
                                   mask_temperature, mask_sampling)
        return Tokens(ids.astype(np.int64), None if masks is None else masks.astype(np.int64))

    def sample(self, n: int, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               seed: int | None = 0, label: int | None = None, mask_temperature: float = 1.0,
               mask_sampling: str = "prior", output: str = "pil"):
        """n images sampled from the prior: tokens first, then decoded (see `decode` for `output`)."""
        return self.decode(self.sample_tokens(n, temperature, top_k, top_p, seed, label, mask_temperature,
                                              mask_sampling), output=output)

    def __repr__(self) -> str:
        q = self.tokenizer.cfg.quantizer
        return (f"Pipeline({self.source or 'unsaved'!r}: {q.describe()}, {self.tokenizer.tokens_per_image} tokens, "
                f"vocabulary {self.tokenizer.vocab_size}, prior {'yes' if self.prior is not None else 'no'})")


def _images_out(images: np.ndarray, output: str):
    """uint8 (N, H, W[, C]) -> PIL images, the array itself, or a float tensor (N, C, H, W) in [-1, 1]."""
    if output == "numpy":
        return images
    if output == "tensor":
        from .images import to_float

        return to_float(images)
    if output == "pil":
        from PIL import Image

        return [Image.fromarray(a) for a in images]
    raise ValueError(f"output must be 'pil', 'numpy' or 'tensor', got {output!r}")
