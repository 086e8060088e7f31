"""`mvq eval`: reconstruction and generation quality of a model (FD, MSE, PSNR, SSIM, codebook use).

FD is the Fréchet distance in the features of the project's own classifier (see classifier.py).
Results go to stdout as a table, optionally to --json, and into the model folder's config.json
under "eval" (and its README.md) only when --model names a local folder (never a shipped model in the
package data, nor a Hub cache snapshot), the whole data set was measured (no --limit) and not --no-write.
"""

from __future__ import annotations

import itertools
import json
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from .. import data as data_io
from ..cards import model_card
from ..datasets import FASHION, count_images, load_images
from ..hub import load_pipeline, read_config, shipped_root, weights_digest
from .common import (DEFAULT_MODEL, BatchOpt, DeviceOpt, JsonOpt, ModelOpt, SeedOpt, console, fail, pick_device,
                     progress_bar)

if TYPE_CHECKING:
    import torch

REFERENCE_IMAGES = 10_000  # train images in the real-vs-real FD floor, when the feature net does not store it


def load_eval_images(source: str, size: int, channels: int, limit: int | None) -> tuple[np.ndarray, str]:
    """(uint8 images (N, H, W) or (N, H, W, 3), a description) from the Fashion-MNIST test split or a folder."""
    if source == FASHION:
        images = load_images(source, "test", size, channels, limit)
        return images, f"{FASHION} test ({len(images):,} images)"
    with progress_bar(f"loading {source}", count_images(source, limit)) as bar:
        images = load_images(source, "", size, channels, limit, on_image=bar.advance)
    return images, f"{source} ({len(images):,} images)"


def reference_fd(net, info: dict, test_features: np.ndarray | None, batch_size: int, dev: torch.device) -> float | None:
    """FD of real Fashion-MNIST train vs test images: stored with the feature net, else computed when possible."""
    from ..fd import extract_features, features_fd

    if info.get("fd_train_vs_test") is not None:
        return float(info["fd_train_vs_test"])
    if test_features is None:
        return None
    train = load_images(FASHION, "train", 28, 1, REFERENCE_IMAGES)
    with progress_bar("features of real train images", len(train)) as bar:
        train_features = extract_features(net, train, batch_size, dev, on_batch=bar.advance)
    return features_fd(train_features, test_features)


def eval_cmd(
    model: ModelOpt = DEFAULT_MODEL,
    data: Annotated[str, typer.Option("--data", help=f"'{FASHION}' (its 10,000 test images) or an image folder.")] = FASHION,
    limit: Annotated[int | None, typer.Option("--limit", min=2, help="Use only the first N images (quick runs).")] = None,
    feature_net: Annotated[str, typer.Option("--feature-net", help="Classifier folder, or a shipped name, whose features FD uses ('auto': the shipped one made for the model's image shape).")] = "auto",
    json_out: JsonOpt = None,
    batch_size: BatchOpt = 500,
    seed: SeedOpt = 0,
    no_write: Annotated[bool, typer.Option("--no-write", help="Do not write the results into the model folder.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Measure a model: reconstruction FD, MSE, PSNR, SSIM, codebook use, and generation FD of its prior."""
    from ..classifier import feature_net_for, load_feature_net
    from ..evaluate import reconstruction_metrics
    from ..fd import ReconstructionQuality, extract_features, features_fd, generated_images

    dev = pick_device(device)
    t0 = time.perf_counter()
    data_io.check_writable(json_out)
    pipe = load_pipeline(model, dev)
    tok = pipe.tokenizer
    skip_reason = None if no_write else _why_not_written(model, pipe.folder, limit)
    write_into = not no_write and skip_reason is None
    if write_into:
        try:
            data_io.check_writable(folders=[pipe.folder])
        except data_io.InputError as err:
            fail(f"{err}: the results could not be written into the model folder; pass --no-write to only "
                 "print them")
    if feature_net == "auto":
        feature_net = feature_net_for(tok.cfg.image_size, tok.cfg.channels)
    net, net_info = load_feature_net(feature_net, dev)
    images, description = load_eval_images(data, tok.cfg.image_size, tok.cfg.channels, limit)
    if len(images) < 2:
        fail(f"FD needs at least 2 images, {data} gave {len(images)}")
    n = len(images)

    quality = ReconstructionQuality(net, dev)
    with progress_bar("reconstruct: MSE, SSIM, features", n) as bar:
        metrics = reconstruction_metrics(tok, images, batch_size, dev, on_batch=bar.advance, on_pair=quality)
    real, recon, ssim_mean = quality.result()
    generation_fd = None
    if pipe.prior is not None:
        with console.status(f"sampling {n:,} token sequences with the prior"):
            batches = generated_images(pipe.prior, tok, n, seed, batch_size=1000, device=dev)
            first = next(batches)  # sampling happens here, under the spinner
        with progress_bar("features of samples", n) as bar:
            generated = extract_features(net, itertools.chain([first], batches), batch_size, dev, on_batch=bar.advance)
        generation_fd = features_fd(real, generated)
    else:
        console.print("note: the model has no prior, so there is no generation FD (train one with `mvq train prior`)",
                      soft_wrap=True)
    fd_floor = reference_fd(net, net_info, real if data == FASHION and limit is None else None, batch_size, dev)

    result = {
        "recon_fd": features_fd(real, recon),
        "generation_fd": generation_fd,
        "mse": metrics["mse"],
        "psnr": metrics["psnr"],
        "ssim": ssim_mean,
        "codebook_usage": metrics["codebook_usage"],
        "tokens_used": metrics["tokens_used"],
        "perplexity": metrics["perplexity"],
        "images": n,
        "eval_data": description,
        "fd_train_vs_test": fd_floor,
        "feature_net": feature_net,
        "feature_net_accuracy": net_info.get("test_accuracy"),
        "seed": seed,
        "weights_sha256": weights_digest(pipe.folder),
        "device": str(dev),
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "mvq " + shlex.join(sys.argv[1:]),
    }
    _print(model, result)
    if skip_reason is not None:
        console.print(f"note: {skip_reason}", soft_wrap=True, highlight=False)
    if json_out is not None:
        report = {"model": model, "folder": str(pipe.folder), **result,
                  "written_to": str(pipe.folder / "config.json") if write_into else None}
        data_io.atomic_write(json_out, lambda p: Path(p).write_text(json.dumps(report, indent=2) + "\n"))
        console.print(f"wrote {json_out}")
    if write_into:
        _write_into_model(pipe.folder, result)
        console.print(f"wrote the results into {pipe.folder / 'config.json'} (\"eval\") and README.md")


def _why_not_written(model: str, folder: Path, limit: int | None) -> str | None:
    """Why the results must not go into the model folder, or None when they may: only a local folder the user
    named, never the installed package data or a Hub cache snapshot, and only measurements of the whole data."""
    keep = "use --json to keep these results"
    if folder.resolve().is_relative_to(shipped_root().resolve()):
        return (f"{model} is a shipped model (package data in {folder}), so the results are not written into it "
                f"({keep}, or copy the folder and evaluate the copy)")
    if not Path(model).expanduser().is_dir():
        return f"{model} is a Hub cache snapshot, so the results are not written into it ({keep}, or download it to a folder)"
    if limit is not None:
        return (f"--limit {limit} measures part of the data, so nothing is written into {folder} (its stored results "
                f"stay those of a full run; {keep})")
    return None


def _write_into_model(folder: Path, result: dict) -> None:
    """Put `result` under "eval" in config.json (read afresh: another command may have written it meanwhile)."""
    try:
        cfg = read_config(folder)
        cfg["eval"] = result
        data_io.atomic_write(folder / "config.json", lambda p: Path(p).write_text(json.dumps(cfg, indent=2) + "\n"))
        card = model_card(read_config(folder), folder.name)
        data_io.atomic_write(folder / "README.md", lambda p: Path(p).write_text(card))
    except OSError as err:
        fail(f"could not write the results into {folder} ({err.strerror or err}); the table above is complete, "
             "pass --no-write to skip this step")


def _print(model: str, r: dict) -> None:
    def num(v, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    table = Table(title=f"mvq eval {model}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("data", r["eval_data"]),
        ("feature net (FD)", r["feature_net"]),
        ("reconstruction FD", num(r["recon_fd"], ".4g")),
        ("generation FD", num(r["generation_fd"], ".4g") if r["generation_fd"] is not None else "- (no prior)"),
        ("FD real train vs test (floor)", num(r["fd_train_vs_test"], ".4g")),
        ("MSE ([-1, 1] pixels)", num(r["mse"], ".5f")),
        ("PSNR dB", num(r["psnr"], ".2f")),
        ("SSIM", num(r["ssim"], ".4f")),
        ("codebook usage", num(r["codebook_usage"], ".3f")),
        ("tokens used", str(r["tokens_used"])),
        ("perplexity", num(r["perplexity"], ".2f")),
        ("feature net test accuracy", num(r["feature_net_accuracy"], ".4f")),
        ("prior seed", str(r["seed"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)  # the table is the command's output: stdout
