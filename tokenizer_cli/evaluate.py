"""Quality measures of a model: reconstruction of held-out images (MSE, PSNR, token usage), and what
`mvq eval` measures (FD of reconstructions and of the prior's samples in a classifier's features, SSIM).

Nothing here prints or writes files; progress goes through `progress` (see progress.py)."""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from .classifier import feature_net_for, load_feature_net
from .config import ConfigError, EvalResult, ReconstructionMetrics
from .data import BadArgument, InputError
from .datasets import FASHION, describe, held_out_folder, is_array, load_array, load_images, train_split_beside
from .fd import ReconstructionQuality, extract_features, features_fd, generated_images
from .hub import is_shipped, weights_digest
from .images import DEFAULT_FIT, PictureTally, to_float
from .inference import sampler_kind, sampler_label, sampler_options
from .progress import Progress, no_progress
from .quantizers.base import usage_stats

if TYPE_CHECKING:  # evaluation works on a loaded pipeline; pipeline.py calls down into this module
    from .pipeline import Pipeline

# FD of two disjoint random samples of n Fashion-MNIST test images each, in the shipped classifier's features
# (mean ± std over 5 splits; test_cli_eval.py measures it again): the part of an FD on n images that is
# sampling alone. Below 2,000 images it exceeds 2 (6x its value at 10,000) and varies by a fifth between
# samples; at 100 it is half the FD of the shipped models, at 24 larger than most.
SAME_DATA_FD = {24: "196 ± 42", 50: "89 ± 21", 100: "47 ± 11", 250: "17 ± 3", 500: "9.7 ± 1.7", 1000: "4.8 ± 0.8"}
MIN_FD_IMAGES = 2_000


@torch.inference_mode()
def reconstruction_metrics(tokenizer, images: np.ndarray, batch_size: int = 500, device: torch.device | str = "cpu",
                           on_batch: Callable[[int], None] | None = None,
                           on_pair: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> ReconstructionMetrics:
    """MSE on [-1, 1] pixels, PSNR on [0, 1] pixels, and the share of the vocabulary used.

    `on_pair(images, reconstructions)` sees every batch, so other measures share this one pass."""
    tokenizer.eval().to(device)
    sq_err, count, all_ids = 0.0, 0, []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size]).to(device)
        ids, masks = tokenizer.encode(x, with_masks=True)
        recon = tokenizer.decode(ids, masks)  # MVQ with sampled masks: the winning masks, as `mvq decode` uses
        sq_err += (recon.float() - x).pow(2).sum().item()
        if on_pair is not None:
            on_pair(x, recon)
        count += x.numel()
        all_ids.append(ids.cpu())
        if on_batch is not None:
            on_batch(len(x))
    mse = sq_err / count
    ids = torch.cat(all_ids)
    usage, perplexity = usage_stats(ids, tokenizer.vocab_size)
    return ReconstructionMetrics(images=len(images), mse=mse,
                                 psnr=10 * math.log10(4.0 / mse),  # [-1,1] is 2 wide: PSNR of the [0,1] image
                                 codebook_usage=usage, tokens_used=int(ids.unique().numel()), perplexity=perplexity)


def held_out_metrics(tokenizer, data: str, train_images: np.ndarray, device: torch.device | str = "cpu",
                     progress: Progress = no_progress, fit: str = DEFAULT_FIT) -> ReconstructionMetrics:
    """Reconstruction metrics on the held-out split of `data`: Fashion-MNIST test, or the `test` folder beside
    a `train` folder (read with `fit`, as the training pictures were); on the training images themselves when
    there is none (and eval_data says so)."""
    held_out = held_out_folder(data)
    cfg = tokenizer.cfg
    if data == FASHION:
        images, what = load_images(data, "test", 28, 1), f"{FASHION} test"
    elif held_out is not None:
        images = load_images(str(held_out), "", cfg.image_size, cfg.channels, progress=progress, fit=fit)
        what = str(held_out)
    else:
        images, what = train_images, f"{data}, the training images"
    with progress("evaluate", len(images)) as bar:
        metrics = reconstruction_metrics(tokenizer, images, device=device, on_batch=bar.advance)
    return dataclasses.replace(metrics, eval_data=f"{what} ({len(images):,} images)")


def floor_fd(net, data: str, test_features: np.ndarray, size: int, channels: int, batch_size: int,
             device: torch.device, progress: Progress = no_progress, fit: str = DEFAULT_FIT) -> float | None:
    """FD of real images vs real images of the data measured, as many: the first n of its train split (fitted by
    `fit`, as the test images were) vs the n test images (None where the data has no train split). No model's FD
    on these images can be expected below."""
    train_source = train_split_beside(data)
    if train_source is None:
        return None
    n = len(test_features)
    if is_array(train_source):  # a packed set is in source order: rows spread over all of it, not its first n
        train = load_array(Path(train_source), size, channels, n, spread=True)
    else:
        train = load_images(train_source, "train", size, channels, n, progress=progress, fit=fit)
    if len(train) < 2:
        return None
    with progress("features of real train images", len(train)) as bar:
        train_features = extract_features(net, train, batch_size, device, on_batch=bar.advance)
    return features_fd(train_features, test_features)


def small_sample_warning(n: int) -> str | None:
    """Why FD on n images says little, or None from MIN_FD_IMAGES on."""
    if n >= MIN_FD_IMAGES:
        return None
    size = max([k for k in SAME_DATA_FD if k <= n], default=min(SAME_DATA_FD))
    return (f"FD on {n:,} images says little (measured on Fashion-MNIST: two disjoint samples of {size:,} of its test "
            f"images are FD {SAME_DATA_FD[size]} apart, 0.31 at 10,000, in its classifier's features); compare "
            f"models on {MIN_FD_IMAGES:,} images or more")


def default_eval_data(pipe: Pipeline) -> str:
    """What a model is measured on when no data is named: the held-out split of the data its tokenizer was trained
    on (Fashion-MNIST's test split, or the test folder or array beside a train one), or one line (BadArgument)
    naming that data when it is not here."""
    trained_on = pipe.config.training.data if pipe.config.training is not None else None
    if trained_on == FASHION:
        return FASHION
    held = held_out_folder(trained_on) if trained_on else None
    if held is not None:
        return str(held)
    where = f"was trained on {trained_on}, which is not on this machine" if trained_on else "records no training data"
    raise BadArgument("data", f"{pipe.source} {where}: name the pictures to measure it on (an image folder, a packed "
                              "images.npy, or fashion-mnist)")


def evaluate_pipeline(pipe: Pipeline, data: str | None = None, limit: int | None = None, feature_net: str = "auto",
                      batch_size: int = 500, seed: int = 0, progress: Progress = no_progress,
                      command: str | None = None, fit: str = DEFAULT_FIT,
                      tally: PictureTally | None = None, sampler: str | None = None, steps: int | None = None,
                      choice_temperature: float | None = None) -> EvalResult:
    """What `mvq eval` measures: reconstruction FD, MSE, PSNR, SSIM and codebook use on `data` (the Fashion-MNIST
    test split or an image folder; None: default_eval_data, its first `limit` images if given, fitted by `fit` and counted in `tally`),
    and the generation FD of as many samples of the prior (seeded by `seed`; None without a prior), in the
    features of `feature_net` ('auto': the shipped one made for the model's image shape). The samples come from
    `sampler` ("ar" or "maskgit"; by default the AR prior where the model has one, as `mvq sample`), MaskGIT's
    in `steps` passes with `choice_temperature`; a sampler the model lacks or a bad option is one line
    (BadArgument) before anything is measured."""
    t0 = time.perf_counter()
    tok, dev = pipe.tokenizer, pipe.device
    data = default_eval_data(pipe) if data is None else data
    prior, options = None, {}
    if pipe.priors or sampler is not None:
        prior = pipe.sampler(sampler)
        options = sampler_options(prior, steps, choice_temperature)
    elif steps is not None or choice_temperature is not None:
        raise BadArgument("steps" if steps is not None else "choice_temperature",
                          "is an option of the MaskGIT sampler, but the model has no prior")
    if feature_net == "auto":
        feature_net = feature_net_for(tok.cfg.image_size, tok.cfg.channels)
    net, net_info = load_feature_net(feature_net, dev)
    images = load_images(data, "test", tok.cfg.image_size, tok.cfg.channels, limit, progress, fit, tally)
    n = len(images)
    if n < 2:
        raise InputError(f"FD needs at least 2 images, {data} gave {n}")
    quality = ReconstructionQuality(net, dev)
    with progress("reconstruct: MSE, SSIM, features", n) as bar:
        metrics = reconstruction_metrics(tok, images, batch_size, dev, on_batch=bar.advance, on_pair=quality)
    real, recon, ssim_mean = quality.result()
    generation_fd = None
    if prior is not None:
        with progress(f"sample {n:,} images with the {sampler_label(prior, options)}", n) as bar:
            batches = generated_images(prior, tok, n, seed, batch_size=1000, device=dev, on_batch=bar.advance,
                                       **options)
            first = next(batches)  # every sequence is sampled before the first batch is decoded
        with progress("features of the samples", n) as bar:
            generated = extract_features(net, itertools.chain([first], batches), batch_size, dev,
                                         on_batch=bar.advance)
        generation_fd = features_fd(real, generated)
    return EvalResult(
        recon_fd=features_fd(real, recon), generation_fd=generation_fd, mse=metrics.mse, psnr=metrics.psnr,
        sampler=None if prior is None else sampler_label(prior, options),
        ssim=ssim_mean, codebook_usage=metrics.codebook_usage, tokens_used=metrics.tokens_used,
        perplexity=metrics.perplexity, images=n, eval_data=describe(data, "test", n),
        fd_train_vs_test=floor_fd(net, data, real, tok.cfg.image_size, tok.cfg.channels, batch_size, dev, progress,
                                  fit),
        feature_net=feature_net, feature_net_accuracy=net_info.get("test_accuracy"), seed=seed,
        weights_sha256=weights_digest(pipe.folder, sampler_kind(prior)) if pipe.folder is not None else None, device=str(dev),
        seconds=round(time.perf_counter() - t0, 1), command=command, warning=small_sample_warning(n))


def why_not_recorded(model: str, pipe: Pipeline, limit: int | None, sampler_chosen: bool = False) -> str | None:
    """Why an evaluation must not go into the model folder, or None when it may: only a local folder the user
    named, never the installed package data or a Hub cache snapshot, nor a folder a newer mvq wrote, and only
    measurements of the whole data with the default sampler (the folder keeps one "eval" record)."""
    keep = "use --json to keep these results"
    folder = pipe.folder
    if folder is None:
        return "the model was not loaded from a folder"
    if is_shipped(folder):
        return (f"{model} is a shipped model (package data in {folder}), so the results are not written into it "
                f"({keep}, or copy the folder and evaluate the copy)")
    if not Path(model).expanduser().is_dir():
        return f"{model} is a Hub cache snapshot, so the results are not written into it ({keep}, or download it to a folder)"
    try:
        pipe.config.check_rewritable()
    except ConfigError as err:
        return f"{folder}/{err} ({keep})"
    if sampler_chosen:
        return (f"the sampler options chose how to sample, so nothing is written into {folder} (its stored results "
                f"are those of the default sampler; {keep})")
    if limit is not None:
        return (f"--limit {limit} measures part of the data, so nothing is written into {folder} (its stored results "
                f"stay those of a full run; {keep})")
    return None
