"""`mvq sample`: draw token sequences from a model's prior and decode them to images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from .. import data as data_io
from ..hub import load_pipeline
from ..tokenfile import make_manifest, manifest_path, save_tokens
from .common import DEFAULT_MODEL, DeviceOpt, ModelOpt, OverwriteOpt, SeedOpt, console, fail, pick_device
from .decode import write_images
from .encode import refuse_existing


def sample(
    n: Annotated[int, typer.Option("--n", "-n", help="Images to sample.")] = 64,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG contact sheet (8x8 for 64).")] = Path("samples.png"),
    model: ModelOpt = DEFAULT_MODEL,
    temperature: Annotated[float, typer.Option("--temperature", "-T", help="Softmax temperature; 0 = greedy.")] = 1.0,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Sample only among the k most likely tokens.")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="Nucleus sampling: smallest set with this much probability.")] = None,
    label: Annotated[int | None, typer.Option("--class", help="Class id for a class-conditional prior.")] = None,
    images_dir: Annotated[Path | None, typer.Option("--images-dir", help="Also write one PNG per image here.")] = None,
    tokens_out: Annotated[Path | None, typer.Option("--tokens-out", help="Also write the sampled tokens (.npy + .json).")] = None,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Sample images: the prior draws tokens (with a KV cache), the tokenizer decodes them."""
    import torch

    if n < 1:
        fail(f"--n must be at least 1, got {n}")
    if out.suffix.lower() != ".png":
        fail(f"--out must name a .png file, got {out}")
    if tokens_out is not None and tokens_out.suffix != ".npy":
        fail(f"--tokens-out must end in .npy, got {tokens_out}")
    refuse_existing([out] + ([tokens_out, manifest_path(tokens_out)] if tokens_out else []), overwrite)
    if images_dir is not None and images_dir.is_dir() and any(images_dir.glob("*.png")) and not overwrite:
        fail(f"{images_dir} already holds PNG files (pass --overwrite to replace them)")
    dev = pick_device(device)
    if dev.type == "cpu" and n <= 256:  # small ops: waking a second thread costs more than it saves
        torch.set_num_threads(1)
    pipe = load_pipeline(model, dev, need_prior=True)
    t0 = time.perf_counter()
    try:
        ids = pipe.prior.generate(n, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, labels=label)
    except ValueError as err:
        fail(str(err))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_tokens = time.perf_counter() - t0
    images = data_io.to_uint8(pipe.tokenizer.decode(ids).float().cpu())
    t_total = time.perf_counter() - t0
    write_images(images, images_dir, out)
    if tokens_out is not None:
        vocab = pipe.tokenizer.vocab_size
        manifest = make_manifest(pipe.source, pipe.config_hash, ids.shape[1], vocab,
                                 [f"sample seed={seed} #{i}" for i in range(n)], [])
        save_tokens(tokens_out, ids.cpu().numpy().astype(np.int64), manifest, overwrite)
        console.print(f"wrote {tokens_out}")
    console.print(f"sampled {n} images x {ids.shape[1]} tokens on {dev}: tokens {t_tokens * 1000:.1f} ms "
                  f"({t_tokens / n * 1000:.3f} ms/image), with decoding {t_total * 1000:.1f} ms")
