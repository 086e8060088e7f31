"""The Python API: a tokenizer and its prior, loaded and saved like a Hugging Face Hub model.

    from tokenizer_cli import Pipeline

    pipe = Pipeline.from_pretrained("mvq-fmnist-t2")        # shipped name, local folder or owner/name[@rev]
    tokens = pipe.encode(images)                            # PIL images, uint8 arrays or a float tensor
    images = pipe.decode(tokens)                            # PIL images (exact with MVQ's stored masks)
    sheet = pipe.reconstruction_sheet(images)               # originals beside reconstructions, one PIL image
    pipe = Pipeline.from_token_file("tokens.npy")           # the model a token file's manifest names
    paths = pipe.decode_file("tokens.npy", "out")           # PNGs named after the tokens' sources, as `mvq decode`
    samples = pipe.sample(16, temperature=1.0, seed=0)      # PIL images from the prior (AR, or sampler="maskgit")
    pipe.save_pretrained("my-model"); pipe.push_to_hub("me/my-model", private=True)

The names and behaviour follow huggingface_hub's ModelHubMixin (config from dataclasses, safetensors,
strict loading, revision, offline cache); see `from_pretrained` for why the mixin itself is not used.
Every `mvq` command is a thin shell over this class and the library functions it calls.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from .config import PRIOR_KINDS, EvalResult, ModelConfig
from .data import BadArgument, InputError
from .files import comparison_sheet, image_names, save_png, staged_folder
from .fitting import mismatch_notice
from .hub import (BadCheckpoint, load_weights, push_folder, read_config, resolve_model, save_pipeline,
                  tokenizer_digest)
from .images import DEFAULT_FIT, PictureTally, read_picture, to_float, to_uint8
from .tokenfile import (manifest_model, manifest_path, manifest_sources, read_manifest, read_token_file,
                        validate_masks, validate_tokens)

if TYPE_CHECKING:  # the modules that import torch are imported where used: `mvq --help` starts without torch
    import torch

    from .models import MaskGITPrior, Prior, Tokenizer


class PictureWarning(UserWarning):
    """Pictures that do not fit the model (colour into grey, enlarged, ...): see fitting.mismatch_notice."""


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
    """A tokenizer (images <-> tokens) and, optionally, priors over its tokens (an autoregressive one, `prior`,
    a MaskGIT one, `maskgit_prior`, or both), with their config.json."""

    def __init__(self, tokenizer: Tokenizer, prior: Prior | None = None, config: ModelConfig | None = None,
                 source: str = "", folder: Path | None = None, maskgit_prior: MaskGITPrior | None = None):
        self.tokenizer = tokenizer.eval()
        self.prior = prior.eval() if prior is not None else None
        self.maskgit_prior = maskgit_prior.eval() if maskgit_prior is not None else None
        if config is None:
            config = ModelConfig(tokenizer.cfg, prior.cfg if prior else None,
                                 maskgit_prior=maskgit_prior.cfg if maskgit_prior else None)
        self.config, self.source, self.folder = config, source, folder

    @property
    def priors(self) -> dict[str, Prior | MaskGITPrior]:
        """The priors loaded, by kind ("ar", "maskgit")."""
        return {name: p for name, p in (("ar", self.prior), ("maskgit", self.maskgit_prior)) if p is not None}

    def sampler(self, kind: str | None = None) -> Prior | MaskGITPrior:
        """The prior that samples: `kind` ("ar" or "maskgit"), or by default the AR prior where there is one,
        else the MaskGIT prior. One line (BadCheckpoint, BadArgument) when there is none of that kind."""
        if kind is not None and kind not in PRIOR_KINDS:
            raise BadArgument("sampler", f"must be one of {', '.join(PRIOR_KINDS)}, got {kind!r}")
        if not self.priors:
            raise BadCheckpoint(f"model {self.source!r} has no prior (train one with `mvq train prior`)")
        if kind is None:
            return next(iter(self.priors.values()))
        if kind not in self.priors:
            have = ", ".join(self.priors)
            raise BadArgument("sampler", f"model {self.source!r} has no {PRIOR_KINDS[kind].title} (it has: {have}; "
                                         f"train one with `mvq train prior --kind {kind}`)")
        return self.priors[kind]

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
        the Hub, loads up to three modules from one folder, and validates the config before building any.
        load_prior=False loads the tokenizer alone (to train a new prior, say); need_prior requires a prior
        (of either kind)."""
        from .models import MaskGITPrior, Prior, Tokenizer

        name = str(name_or_path)
        if revision is not None:
            name = f"{name.split('@', 1)[0]}@{revision}"
        folder = resolve_model(name)
        cfg = read_config(folder)
        tokenizer = Tokenizer(cfg.tokenizer)
        load_weights(tokenizer, folder / "tokenizer.safetensors")
        priors = {}
        for kind, model_class in (("ar", Prior), ("maskgit", MaskGITPrior)):
            if load_prior and kind in cfg.prior_kinds:
                priors[kind] = model_class(getattr(cfg, PRIOR_KINDS[kind].key))
                load_weights(priors[kind], folder / PRIOR_KINDS[kind].file)
        if need_prior and not priors:
            raise BadCheckpoint(f"model {name!r} has no prior (train one with `mvq train prior`)")
        return cls(tokenizer, priors.get("ar"), cfg, name, folder, priors.get("maskgit")).to(device)

    @classmethod
    def from_token_file(cls, tokens_file: str | Path, device: str | torch.device = "auto") -> Pipeline:
        """The model that wrote a token file, as its manifest (tokens.json) names it: what `mvq decode` loads
        without --model."""
        name = manifest_model(read_manifest(tokens_file), tokens_file)
        if name is None:
            raise InputError(f"{tokens_file}: no manifest ({manifest_path(tokens_file)}) names its model")
        return cls.from_pretrained(name, device=device)

    def to(self, device: str | torch.device) -> Pipeline:
        dev = resolve_device(device)
        self.tokenizer.to(dev)
        for prior in self.priors.values():
            prior.to(dev)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.tokenizer.parameters()).device

    def save_pretrained(self, folder: str | Path, card: str | None = None) -> Path:
        """Write config.json (with this model's training and evaluation records), tokenizer.safetensors,
        prior.safetensors and prior-maskgit.safetensors (those it has) and README.md (the model card, or `card`)."""
        c = self.config
        records = {"training": c.training, "metrics": c.metrics}
        if self.prior is not None or c.prior is None:
            records.update(prior_training=c.prior_training, eval=c.eval)
        if self.maskgit_prior is not None or c.maskgit_prior is None:
            records.update(maskgit_prior_training=c.maskgit_prior_training)
        # else (loaded without its priors): the folder's own prior records stay with its priors, which stay
        # only beside this same tokenizer (save_pipeline)
        return save_pipeline(Path(folder), self.tokenizer, self.prior, card=card, maskgit_prior=self.maskgit_prior,
                             **records)

    def push_to_hub(self, repo_id: str, private: bool = False, revision: str | None = None) -> str:
        """Save to a temporary folder and upload it with huggingface_hub; returns the commit URL."""
        with tempfile.TemporaryDirectory() as tmp:
            return push_folder(self.save_pretrained(Path(tmp) / repo_id.split("/")[-1]), repo_id, private, revision)

    # ------------------------------------------------------------ measuring

    def evaluate(self, data: str | None = None, limit: int | None = None, feature_net: str = "auto",
                 batch_size: int = 500, seed: int = 0, fit: str = DEFAULT_FIT, sampler: str | None = None,
                 steps: int | None = None, choice_temperature: float | None = None) -> EvalResult:
        """What `mvq eval` measures (reconstruction FD, MSE, PSNR, SSIM, codebook use, generation FD of the prior
        on as many samples as test images), as an EvalResult; nothing is written. `data` as `mvq eval --data`
        (None: the test split of the data the model was trained on, where it is here). A folder's pictures are fitted
        by `fit`, with a warning when they do not fit the model. `sampler`, `steps`, `choice_temperature`: as
        in `sample`."""
        from .evaluate import evaluate_pipeline

        tally = PictureTally(self.tokenizer.cfg.image_size, fit)
        result = evaluate_pipeline(self, data, limit, feature_net, batch_size, seed, fit=fit, tally=tally,
                                   sampler=sampler, steps=steps, choice_temperature=choice_temperature)
        self._warn_if_unfit(tally)
        return result

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
            self._tokenizer_id = tokenizer_digest(self.tokenizer)
        return self._tokenizer_id

    # ------------------------------------------------------------ images <-> tokens

    def images_to_tensor(self, images: Any, fit: str = DEFAULT_FIT) -> torch.Tensor:
        """PIL images, uint8 arrays ((N,) H, W[, C]) or a float tensor (N, C, H, W) in [-1, 1] -> the model's
        float input (N, C, S, S); other sizes and modes are converted as `mvq encode` converts files (`fit`:
        images.FIT_HELP), with one warning when they do not fit the model (colour into grey, say)."""
        import torch
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
        tally, arrays = PictureTally(cfg.image_size, fit), []
        for img in images:
            array, info = read_picture(img, cfg.image_size, cfg.channels, fit)
            arrays.append(array)
            tally.add(info)
        if not arrays:
            raise InputError("no images given")
        self._warn_if_unfit(tally)
        return torch.from_numpy(np.stack(arrays)).to(self.device)

    def _warn_if_unfit(self, tally) -> None:
        cfg = self.tokenizer.cfg
        notice = mismatch_notice(tally, cfg.channels, self.source or "the model")
        if notice:
            warnings.warn(notice, PictureWarning, stacklevel=3)

    def encode(self, images: Any, batch_size: int = 256, fit: str = DEFAULT_FIT) -> Tokens:
        """Token ids (N, T) of images (fitted to the model's square by `fit`: images.FIT_HELP), and the mask of
        every token where the model has masks."""
        import torch

        x = self.images_to_tensor(images, fit)
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

        if isinstance(tokens, Tokens):
            tokens, masks = tokens.ids, tokens.masks if masks is None else masks
        tok = self.tokenizer
        ids = validate_tokens(np.asarray(tokens), tok.tokens_per_image, tok.vocab_size)
        if masks is not None and tok.num_masks:
            masks = validate_masks(np.asarray(masks), ids.shape, tok.num_masks)
        batches = decode_tokens(tok, ids, masks, batch_size, self.device, seed=seed,
                                mask_temperature=mask_temperature, mask_sampling=mask_sampling)
        return _images_out(np.concatenate(list(batches)), output)

    def reconstruct(self, images: Any, fit: str = DEFAULT_FIT, output: str = "pil", batch_size: int = 256):
        """The model's reconstructions of images (encoded, then decoded with their own masks), in the form of
        `decode`'s `output`."""
        return self.decode(self.encode(images, batch_size, fit), output=output, batch_size=batch_size)

    def reconstruction_sheet(self, images: Any, fit: str = DEFAULT_FIT, scale: int | None = None,
                             pairs_per_row: int | None = None, names: Sequence[str] | None = None):
        """What `mvq reconstruct` draws, as one PIL image: each picture as the model reads it beside its
        reconstruction, tiles enlarged `scale` times (default: at least files.READABLE_TILE px), each pair
        captioned with its PSNR and with its name (`names`, one per picture; `mvq reconstruct` gives the
        files' names)."""
        x = self.images_to_tensor(images, fit)
        if names is not None and len(names) != len(x):
            raise InputError(f"{len(names)} names for {len(x)} pictures")
        recon = self.reconstruct(x, output="numpy")
        return Image.fromarray(comparison_sheet(to_uint8(x), recon, scale, pairs_per_row, names))

    def decode_file(self, tokens_file: str | Path, folder: str | Path, force: bool = False, seed: int | None = 0,
                    batch_size: int = 256) -> list[Path]:
        """What `mvq decode TOKENS FOLDER` writes: one PNG per row of a token file (checked to come from this
        tokenizer unless `force`), named after the row's source (files.image_names); returns their paths.
        As there, the PNGs appear in `folder` only once all are written (files.staged_folder)."""
        from .inference import decode_tokens

        ids, masks = read_token_file(tokens_file, self, force=force)
        sources = manifest_sources(read_manifest(tokens_file), len(ids))
        names = image_names(sources) if sources is not None else [f"{i:05d}.png" for i in range(len(ids))]
        batches = decode_tokens(self.tokenizer, ids, masks, batch_size, self.device, seed=seed)
        with staged_folder(Path(folder)) as staging:
            for name, img in zip(names, (img for batch in batches for img in batch)):
                save_png(img, staging / name)
        return [Path(folder) / name for name in names]

    # ------------------------------------------------------------ sampling

    def sample_tokens(self, n: int, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                      seed: int | None = 0, label: int | None = None, mask_temperature: float = 1.0,
                      mask_sampling: str = "prior", sampler: str | None = None, steps: int | None = None,
                      choice_temperature: float | None = None, guidance_scale: float = 0.0) -> Tokens:
        """n token rows from a prior, and drawn masks for MVQ with sampled masks.

        sampler: "ar" (one position at a time, with a KV cache) or "maskgit" (parallel decoding in `steps`
        passes, default min(8, T); `choice_temperature`, default 4.5, is the Gumbel noise on which draws are
        kept; `guidance_scale` > 0 is classifier-free guidance for a class-conditional prior); default: the AR
        prior where the model has one, else the MaskGIT prior."""
        from .inference import sample_tokens, sampler_options

        prior = self.sampler(sampler)
        options = sampler_options(prior, steps, choice_temperature, guidance_scale)
        ids, masks = sample_tokens(prior, self.tokenizer, n, seed, label, mask_temperature, mask_sampling,
                                   temperature=temperature, top_k=top_k, top_p=top_p, **options)
        return Tokens(ids.astype(np.int64), None if masks is None else masks.astype(np.int64))

    def sample(self, n: int, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               seed: int | None = 0, label: int | None = None, mask_temperature: float = 1.0,
               mask_sampling: str = "prior", output: str = "pil", sampler: str | None = None,
               steps: int | None = None, choice_temperature: float | None = None, guidance_scale: float = 0.0):
        """n images sampled from a prior (see `sample_tokens`), then decoded (see `decode` for `output`)."""
        tokens = self.sample_tokens(n, temperature, top_k, top_p, seed, label, mask_temperature, mask_sampling,
                                    sampler, steps, choice_temperature, guidance_scale)
        return self.decode(tokens, output=output)

    def __repr__(self) -> str:
        q = self.tokenizer.cfg.quantizer
        return (f"Pipeline({self.source or 'unsaved'!r}: {q.describe()}, {self.tokenizer.tokens_per_image} tokens, "
                f"vocabulary {self.tokenizer.vocab_size}, priors {', '.join(self.priors) or 'none'})")


def load_pipeline(name: str, device: torch.device | str = "cpu", need_prior: bool = False,
                  load_prior: bool = True) -> Pipeline:
    """`Pipeline.from_pretrained` under the name the commands use."""
    return Pipeline.from_pretrained(name, device=device, need_prior=need_prior, load_prior=load_prior)


def _images_out(images: np.ndarray, output: str):
    """uint8 (N, H, W[, C]) -> PIL images, the array itself, or a float tensor (N, C, H, W) in [-1, 1]."""
    if output == "numpy":
        return images
    if output == "tensor":
        return to_float(images)
    if output == "pil":
        return [Image.fromarray(a) for a in images]
    raise ValueError(f"output must be 'pil', 'numpy' or 'tensor', got {output!r}")
