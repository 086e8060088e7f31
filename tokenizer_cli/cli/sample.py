"""`mvq sample`: draw token sequences from a model's prior and decode them to images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from .. import files
from ..pipeline import load_pipeline
from ..tokenfile import make_manifest, manifest_path, masks_path, save_tokens
from .common import (DEFAULT_MODEL, ChoiceTemperatureOpt, DeviceOpt, MaskTemperatureOpt, ModelOpt, OverwriteOpt,
                     SamplerOpt, ScaleOpt, SeedOpt, StepsOpt, console, fail, finite, one_of, pick_device,
                     progress_bar, steps_number)
from .decode import write_images
from .encode import refuse_existing

MAX_SAMPLES = 1_000_000  # the tokens (and their manifest) are held in memory; images are streamed


def sample(
    n: Annotated[int, typer.Option("--n", "-n", min=1, max=MAX_SAMPLES, help="Images to sample.")] = 64,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG contact sheet (8x8 for 64; the first 1,024 images).")] = Path("samples.png"),
    model: ModelOpt = DEFAULT_MODEL,
    temperature: Annotated[float, typer.Option("--temperature", "-T", min=0.0, callback=finite, help="Softmax temperature; 0 = greedy.")] = 1.0,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, help="Sample only among the k most likely tokens.")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling: smallest set with this much probability.")] = None,
    label: Annotated[int | None, typer.Option("--class", help="Class id for a class-conditional prior.")] = None,
    mask_sampling: Annotated[str, typer.Option("--mask-sampling", callback=one_of("prior", "learned", "uniform"), help="MVQ with sampled masks: masks from the prior's mask head ('prior'; 'learned' where it has none), from the tokenizer's p(m | k) ('learned'), or 'uniform'.")] = "prior",
    mask_temperature: MaskTemperatureOpt = 1.0,
    scale: ScaleOpt = None,
    images_dir: Annotated[Path | None, typer.Option("--images-dir", help="Also write one PNG per image here, named after the seed and the sample's index (sample-seed-0-00000.png), as `mvq decode` names the tokens of --tokens-out.")] = None,
    tokens_out: Annotated[Path | None, typer.Option("--tokens-out", help="Also write the sampled tokens (.npy + .json, and the drawn masks for MVQ with sampled masks).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, max=65536, help="Images sampled and decoded at a time.")] = 1024,
    graph: Annotated[bool, typer.Option("--graph", help="AR prior: run each sampling step as one compiled graph (torch.compile 'reduce-overhead': CUDA graphs on a GPU); the same tokens as without, after a compile of seconds to a minute.")] = False,
    sampler: SamplerOpt = None,
    steps: StepsOpt = None,
    choice_temperature: ChoiceTemperatureOpt = None,
    guidance_scale: Annotated[float, typer.Option("--guidance-scale", min=0.0, callback=finite, help="MaskGIT with --class: classifier-free guidance scale (0: off).")] = 0.0,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Sample images: a prior draws tokens (AR with a KV cache, or MaskGIT in a few parallel steps), the
    tokenizer decodes them.

    For MVQ with sampled masks the prior draws code ids and each token's mask comes from the prior's mask head
    or the model's p(m | k) (--mask-sampling, --mask-temperature)."""
    import torch

    from ..inference import decode_tokens, sample_tokens, sampler_label, sampler_options

    if out.suffix.lower() != ".png":
        fail(f"--out must name a .png file, got {out}")
    if tokens_out is not None and tokens_out.suffix != ".npy":
        fail(f"--tokens-out must end in .npy, got {tokens_out}")
    tokens_files = [tokens_out, manifest_path(tokens_out), masks_path(tokens_out)] if tokens_out else []
    refuse_existing([out] + tokens_files, overwrite)
    if images_dir is not None and images_dir.is_dir() and any(images_dir.glob("*.png")) and not overwrite:
        fail(f"{images_dir} already holds PNG files (pass --overwrite to replace them)")
    files.check_writable(out, *tokens_files, folders=[images_dir])
    steps_n = steps_number(steps)
    dev = pick_device(device)
    if dev.type == "cpu" and n <= 256:  # small ops: waking a second thread costs more than it saves
        torch.set_num_threads(1)
    pipe = load_pipeline(model, dev, need_prior=True)
    tok = pipe.tokenizer
    prior = pipe.sampler(sampler)
    options = sampler_options(prior, steps_n, choice_temperature, guidance_scale, graph)

    t0 = time.perf_counter()
    try:
        ids, masks = sample_tokens(prior, tok, n, seed, label, mask_temperature, mask_sampling, batch_size,
                                   temperature=temperature, top_k=top_k, top_p=top_p, **options)
    except ValueError as err:
        fail(str(err))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_tokens = time.perf_counter() - t0
    labels = [f"sample seed={seed} #{i}" for i in range(n)]
    with progress_bar("decode", n) as bar:
        write_images(decode_tokens(tok, ids, masks, batch_size, dev, on_batch=bar.advance), images_dir, out, total=n,
                     names=files.image_names(labels) if images_dir is not None else None, scale=scale)
    t_total = time.perf_counter() - t0
    if tokens_out is not None:
        manifest = make_manifest(pipe.source, pipe.config_hash, ids.shape[1], tok.vocab_size,
                                 labels, [],
                                 tokenizer_id=pipe.tokenizer_id, num_masks=tok.num_masks)
        save_tokens(tokens_out, ids, manifest, overwrite, masks=masks)
        console.print(f"wrote {tokens_out}")
    how = sampler_label(prior, options)
    console.print(f"sampled {n} images x {ids.shape[1]} tokens ({how}) on {dev}: tokens {t_tokens * 1000:.1f} ms "
                  f"({t_tokens / n * 1000:.3f} ms/image), with decoding {t_total * 1000:.1f} ms")
