"""`mvq train tokenizer` and `mvq train prior`."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path
from typing import Annotated, Callable

import typer

from ..config import PRIOR_KINDS, QUANTIZER_KINDS, QuantizerConfig, TokenizerConfig
from ..datasets import FASHION, array_shape, is_array, load_images, look_at_pictures
from ..fitting import mismatch_notice
from ..hub import save_pipeline, swap_in
from ..images import DEFAULT_FIT, PictureTally
from .common import (BatchOpt, DeviceOpt, FitOpt, SeedOpt, Typer, cli_command, console, fail, on_interrupt, one_of,
                     pick_device, progress_bar, warn)

app = Typer(help="Train a tokenizer, or a prior over a tokenizer's tokens.", no_args_is_help=True)

DataOpt = Annotated[str, typer.Option("--data", help=f"'{FASHION}' (Debian dataset-fashion-mnist) or an image folder.")]
OutArg = Annotated[Path, typer.Argument(help="Model folder to write (Hub layout: config.json, *.safetensors, README.md).")]
StepsOpt = Annotated[int, typer.Option("--steps", min=1, max=10_000_000, help="Optimizer steps.")]
LrOpt = Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from the last complete checkpoint in OUT/checkpoints.")]
CkptOpt = Annotated[int, typer.Option("--checkpoint-every", min=0, help="Steps between checkpoints (0: only at the end).")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="auto (bf16 autocast on a GPU or a CPU with native bf16: AMX or AVX512-BF16; else fp32) | fp32 | bf16.")]


def _levels(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        fail(f"--levels takes integers separated by commas, like 8,6,5; got {text!r}")


def checkpoint_note(run_dir: Path, unwritten: str) -> Callable[[], str]:
    """What Ctrl-C leaves of a training: its last checkpoint, if any."""
    from ..train import resume_step

    def note() -> str:
        step = resume_step(run_dir, True)
        if not step:
            return f"no checkpoint was written yet, so nothing is kept; {unwritten}"
        return (f"the checkpoint of step {step:,} is kept in {run_dir}; rerun the same command with --resume to "
                f"continue from it; {unwritten}")

    return note


@app.command("tokenizer", no_args_is_help=True)
@cli_command
def tokenizer(
    ctx: typer.Context,
    out: OutArg,
    data: DataOpt = FASHION,
    quantizer: Annotated[str, typer.Option("--quantizer", "-q", callback=one_of(*QUANTIZER_KINDS), help="vq | fsq | mvq (Masked VQ, the paper's reading: a token is a code id, its mask a sampled hypothesis) | mvq-joint (Masked VQ with the mask in the token: vocabulary K*M).")] = "mvq",
    tokens: Annotated[int, typer.Option("--tokens", "-t", min=1, max=4096, help="Tokens per image T.")] = 2,
    layout: Annotated[str, typer.Option("--layout", callback=one_of("1d", "grid"), help="1d (any T) | grid (T = h*w of the feature map).")] = "1d",
    dim: Annotated[int, typer.Option("--dim", min=1, max=1024, help="Latent size D of one token (vq, mvq).")] = 16,
    num_codes: Annotated[int, typer.Option("--num-codes", "--codebook-size", "-k", min=1, max=65536, help="Code vectors K (vq, mvq, mvq-joint).")] = 16,
    mask_bits: Annotated[int, typer.Option("--mask-bits", "-g", min=1, max=10, help="MVQ mask length g (M = 2^g-1 masks).")] = 4,
    subset_ratio: Annotated[float | None, typer.Option("--subset-ratio", min=0.0, max=1.0, help="MVQ: share of the masks each latent may use per training step (MH-Dropout). Default: 0.5 for mvq, 1.0 for mvq-joint.")] = None,
    hypothesis_form: Annotated[str, typer.Option("--hypothesis-form", callback=one_of("residual", "mhd"), help="MVQ hypotheses: 'residual' h = c_k + out(mu + var(m*sigma)) or 'mhd' h = out(mu + var(m*sigma)) (MH-Dropout's form).")] = "residual",
    mask_scope: Annotated[str, typer.Option("--mask-scope", callback=one_of("token", "image"), help="mvq: one mask per token, or one per image shared by its tokens.")] = "token",
    mask_gradient: Annotated[str, typer.Option("--mask-gradient", callback=one_of("winner", "straight-through"), help="mvq: the decoder's gradient reaches the winning hypothesis ('winner'), or stops at it ('straight-through').")] = "winner",
    winner: Annotated[str, typer.Option("--winner", callback=one_of("all", "code"), help="mvq-joint training: 'all' (nearest of all code x mask pairs) or 'code' (nearest code vector first, then its masks).")] = "all",
    levels: Annotated[str, typer.Option("--levels", help="FSQ levels, comma separated.")] = "8,6,5",
    dead_threshold: Annotated[float, typer.Option("--dead-threshold", min=0.0, max=1.0, help="vq, mvq, mvq-joint: restart a code vector whose use falls below this share of a fair share (a fresh latent replaces it); 0: never (plain VQ-VAE).")] = 0.03,
    image_size: Annotated[int | None, typer.Option("--image-size", help="Image side (28, 32 or 64). Default: 28 for fashion-mnist; for a folder, of the shipped models' sides the closest to its pictures'.")] = None,
    channels: Annotated[int | None, typer.Option("--channels", help="1 (grey) or 3 (RGB). Default: 1 for fashion-mnist; for a folder, 3 if most of its pictures are colour.")] = None,
    fit: FitOpt = DEFAULT_FIT,
    backbone: Annotated[str, typer.Option("--backbone", callback=one_of("conv", "vit"), help="conv (residual conv net) | vit (Transformer over patches; TiTok-style latent tokens for --layout 1d, a token per patch for grid). On CPUs with native bf16 vit's large matmuls train fastest.")] = "conv",
    base_channels: Annotated[int, typer.Option("--base-channels", min=4, help="conv: width of the first stage.")] = 32,
    res_blocks: Annotated[int, typer.Option("--res-blocks", min=0, max=16, help="conv: residual blocks at each resolution (0: the down- and upsampling convs only, about half the step time).")] = 1,
    patch_size: Annotated[int, typer.Option("--patch-size", min=1, max=64, help="vit: patch side in pixels.")] = 8,
    vit_width: Annotated[int, typer.Option("--vit-width", min=8, max=8192, help="vit: model width (a multiple of --vit-heads).")] = 256,
    vit_layers: Annotated[int, typer.Option("--vit-layers", min=1, max=64, help="vit: blocks in the encoder, and again in the decoder.")] = 4,
    vit_heads: Annotated[int, typer.Option("--vit-heads", min=1, max=64, help="vit: attention heads.")] = 4,
    steps: StepsOpt = 2000,
    batch_size: BatchOpt = 128,
    lr: LrOpt = 2e-3,
    seed: SeedOpt = 0,
    checkpoint_every: CkptOpt = 500,
    resume: ResumeOpt = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    adversarial_weight: Annotated[float, typer.Option("--adversarial-weight", min=0.0, max=100.0, help="VQGAN's adversarial patch loss: a small PatchGAN critic (hinge loss) trained beside the tokenizer, its term balanced against MSE by their gradients at the output layer, times this weight (0: off). Sharper pictures at few tokens.")] = 0.0,
    adversarial_start: Annotated[int, typer.Option("--adversarial-start", min=0, help="Steps of reconstruction loss alone before the critic starts (a warm-up).")] = 0,
    feature_weight: Annotated[float, typer.Option("--feature-weight", min=0.0, max=100.0, help="A perceptual loss: distance of the pictures' activations in a feature net (--feature-net), times this weight (0: off).")] = 0.0,
    feature_net: Annotated[str, typer.Option("--feature-net", help="Feature net of --feature-weight: a folder or shipped name; auto: the shipped one made for the pictures' shape (as mvq eval's FD).")] = "auto",
    init_from: Annotated[str | None, typer.Option("--init-from", metavar="MODEL", help="Start from MODEL's tokenizer weights (a folder, shipped name or Hub id) and keep its architecture: fine-tune it, on your pictures or for longer. Its architecture options cannot be given.")] = None,
    precision: PrecisionOpt = "auto",
    device: DeviceOpt = "auto",
) -> None:
    """Train an autoencoder with a VQ, FSQ or MVQ bottleneck and write a model folder.

    Runs data-parallel under `torchrun --nproc_per_node N -m tokenizer_cli train tokenizer ...`.
    """
    import torch

    from .. import distributed
    from ..models import Tokenizer
    from ..evaluate import held_out_metrics
    from ..losses import ObjectiveConfig
    from ..train import (TrainConfig, check_tokenizer_out, resolve_precision, resume_step, train_tokenizer,
                         training_record)

    # Every option and the data are checked before OUT is looked at: a bad one leaves OUT untouched.
    dev = distributed.setup(pick_device(device))
    precision = resolve_precision(precision, dev)
    torch.manual_seed(seed)  # before building, so the seed fixes the init
    if init_from is not None:
        model = _start_from(init_from, ctx)
        image_size, channels = model.cfg.image_size, model.cfg.channels
    else:
        if image_size is None or channels is None:
            image_size, channels = _shape_from_data(data, image_size, channels)
        try:
            qcfg = QuantizerConfig(kind=quantizer, dim=dim, num_codes=num_codes, mask_bits=mask_bits,
                                   subset_ratio=subset_ratio, winner=winner, hypothesis_form=hypothesis_form,
                                   mask_scope=mask_scope, mask_gradient=mask_gradient, levels=_levels(levels),
                                   dead_threshold=dead_threshold)
            cfg = TokenizerConfig(image_size=image_size, channels=channels, tokens=tokens, layout=layout,
                                  base_channels=base_channels, res_blocks=res_blocks, quantizer=qcfg,
                                  backbone=backbone,
                                  patch_size=patch_size, vit_width=vit_width, vit_layers=vit_layers,
                                  vit_heads=vit_heads)
            model = Tokenizer(cfg)
        except ValueError as err:
            fail(str(err))
    objective = ObjectiveConfig(adversarial_weight, adversarial_start, feature_weight)
    net_name, features = _feature_net(feature_net, feature_weight, image_size, channels)
    pictures = PictureTally(image_size, fit)
    images = load_images(data, "train", image_size, channels, progress=progress_bar, fit=fit, tally=pictures)
    if distributed.is_main():
        warn(mismatch_notice(pictures, channels, remedy="options"))
    if distributed.is_main():
        check_tokenizer_out(out, resume, overwrite)
    distributed.barrier()
    tcfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, checkpoint_every=checkpoint_every,
                       precision=precision)
    if distributed.is_main():
        console.print(f"training {model.cfg.quantizer.kind} tokenizer"
                      + (f" from {init_from}" if init_from else "") + f": T={model.tokens_per_image}, "
                      f"vocabulary {model.vocab_size}, "
                      f"{sum(p.numel() for p in model.parameters()):,} parameters, {len(images):,} images, "
                      f"{dev} x {distributed.world_size()}")
    run_dir = out / "checkpoints"
    on_interrupt(checkpoint_note(run_dir, f"the model folder {out} was not written"))
    with progress_bar("train tokenizer", steps, resume_step(run_dir, resume)) as bar:
        try:
            result = train_tokenizer(model, images, tcfg, run_dir, dev, resume=resume,
                                     on_step=lambda step, s: bar.advance(mse=s["mse"], usage=s["usage"]),
                                     objective=objective, feature_net=features)
        except ValueError as err:
            fail(str(err))
    if not distributed.is_main():
        distributed.cleanup()
        return
    metrics = held_out_metrics(model, data, images, dev, progress=progress_bar, fit=fit)
    record = training_record(tcfg, result, data, dev, command="mvq " + shlex.join(sys.argv[1:]),
                             objective=objective, feature_net=net_name, init_from=init_from)
    # The new model replaces OUT whole: no old prior, eval or checkpoints survive.
    swap_in(out, lambda folder: save_pipeline(folder, model.cpu(), name=out.name, training=record, metrics=metrics))
    console.print(f"wrote {out}: MSE {metrics.mse:.4f} on {metrics.eval_data}, PSNR {metrics.psnr:.2f} dB, "
                  f"{metrics.tokens_used}/{model.vocab_size} tokens used")
    distributed.cleanup()


ARCHITECTURE_OPTIONS = ("quantizer", "tokens", "layout", "dim", "num_codes", "mask_bits", "subset_ratio",
                        "hypothesis_form", "mask_scope", "mask_gradient", "winner", "levels", "dead_threshold",
                        "image_size", "channels", "backbone", "base_channels", "res_blocks", "patch_size", "vit_width",
                        "vit_layers", "vit_heads")


def _start_from(name: str, ctx: typer.Context):
    """A tokenizer with MODEL's architecture and weights, to fine-tune (--init-from); architecture options given
    beside it are refused, since they could not be honoured."""
    from ..pipeline import load_pipeline

    given = [p for p in ARCHITECTURE_OPTIONS
             if getattr(ctx.get_parameter_source(p), "name", None) == "COMMANDLINE"]  # typer vendors click's enum
    if given:
        flags = ", ".join("--" + p.replace("_", "-") for p in given)
        fail(f"--init-from {name} keeps that model's architecture: drop {flags}")
    return load_pipeline(name, "cpu", load_prior=False).tokenizer


def _feature_net(name: str, weight: float, image_size: int, channels: int):
    """(the feature net's name, the net) of --feature-weight; (None, None) without it."""
    if weight == 0:
        if name != "auto":
            fail("--feature-net is the net of --feature-weight: give a weight above 0")
        return None, None
    from ..classifier import feature_net_for, load_feature_net
    from ..losses import feature_net_mismatch

    name = feature_net_for(image_size, channels) if name == "auto" else name
    net, info = load_feature_net(name)
    if why := feature_net_mismatch(net, image_size, channels):
        fail(f"feature net {name} {why}")
    return name, net


def _shape_from_data(data: str, image_size: int | None, channels: int | None) -> tuple[int, int]:
    """--image-size and --channels where not given: Fashion-MNIST's 28x28 grey, a packed array's shape, or a
    folder's pictures' own (a sample of them: fitting.shape_from_pictures), said on stderr."""
    from .. import distributed
    from ..fitting import describe, shape_from_pictures

    if data == FASHION:
        return image_size or 28, channels or 1
    if is_array(data):
        side, colour = array_shape(Path(data))
        why = f"a packed array of {describe(side, colour)} images"
    else:
        side, colour, why = shape_from_pictures(look_at_pictures(data))
    chosen = " ".join(([] if image_size else [f"--image-size {side}"]) + ([] if channels else [f"--channels {colour}"]))
    image_size, channels = image_size or side, channels or colour
    if distributed.is_main():
        console.print(f"pictures in {data}: {why}; chose {chosen}: a {describe(image_size, channels)} tokenizer",
                      highlight=False, soft_wrap=True)
    return image_size, channels


@app.command("prior", no_args_is_help=True)
@cli_command
def prior(
    model: Annotated[Path, typer.Argument(help="Model folder whose tokenizer the prior models; the prior is written into it (prior.safetensors, or prior-maskgit.safetensors for --kind maskgit).")],
    kind: Annotated[str, typer.Option("--kind", metavar="ar|maskgit", callback=one_of(*PRIOR_KINDS), help="ar: GPT-style, one token at a time | maskgit: bidirectional, parallel decoding in a few steps. A folder may hold one of each.")] = "ar",
    data: DataOpt = FASHION,
    tokens_file: Annotated[Path | None, typer.Option("--tokens-file", help="Train on a tokens.npy from `mvq encode` instead of --data.")] = None,
    classes: Annotated[bool, typer.Option("--classes", help="Class-conditional prior (Fashion-MNIST labels).")] = False,
    fit: FitOpt = DEFAULT_FIT,
    n_layer: Annotated[int, typer.Option("--layers", min=1, max=64, help="Transformer blocks.")] = 4,
    n_head: Annotated[int, typer.Option("--heads", min=1, max=64, help="Attention heads.")] = 4,
    n_embd: Annotated[int, typer.Option("--width", min=8, max=8192, help="Model width (a multiple of --heads).")] = 128,
    steps: StepsOpt = 3000,
    batch_size: BatchOpt = 256,
    lr: LrOpt = 1e-3,
    seed: SeedOpt = 0,
    checkpoint_every: CkptOpt = 1000,
    resume: ResumeOpt = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the model's prior of this --kind if it has one.")] = False,
    label_smoothing: Annotated[float | None, typer.Option("--label-smoothing", min=0.0, max=1.0, help="maskgit: label smoothing of the loss on the masked positions (default 0.1, MaskGIT's).")] = None,
    min_mask_ratio: Annotated[float | None, typer.Option("--min-mask-ratio", min=0.0, max=1.0, help="maskgit: each training sequence masks at least this share of its tokens (default 0.45, the FSQ paper's; lower teaches the last decoding steps, where few tokens are left masked).")] = None,
    mask_head: Annotated[bool, typer.Option("--mask-head/--no-mask-head", help="MVQ with sampled masks: the prior also predicts each token's mask from the sequence and its code (otherwise `mvq sample` draws masks from the tokenizer's p(m | k)).")] = True,
    precision: PrecisionOpt = "auto",
    device: DeviceOpt = "auto",
) -> None:
    """Train a prior over the tokens of a model's tokenizer: GPT-style (--kind ar) or MaskGIT (--kind maskgit).

    Runs data-parallel under `torchrun --nproc_per_node N -m tokenizer_cli train prior ...`."""
    import torch

    from .. import distributed
    from ..config import MaskGITConfig, PriorConfig
    from ..models import MaskGITPrior, Prior
    from ..pipeline import load_pipeline
    from ..train import (TrainConfig, check_prior_out, prior_training_data, resolve_precision, resume_step,
                         train_prior, training_record)

    dev = distributed.setup(pick_device(device))
    precision = resolve_precision(precision, dev)
    if not (model / "config.json").is_file():
        fail(f"{model} is not a model folder (no config.json); train a tokenizer first")
    if n_embd % n_head:
        fail(f"--width {n_embd} must be a multiple of --heads {n_head}")
    for flag, value in (("--min-mask-ratio", min_mask_ratio), ("--label-smoothing", label_smoothing)):
        if value is not None and kind == "ar":
            fail(f"{flag} is an option of the MaskGIT prior (--kind maskgit)")
    if min_mask_ratio == 0:
        fail("--min-mask-ratio must be above 0 (every training sequence masks at least one token)")
    where = PRIOR_KINDS[kind]
    run_dir = model / where.checkpoints
    on_interrupt(checkpoint_note(run_dir, f"{model / where.file} was not written"))
    if distributed.is_main():
        check_prior_out(model, kind, resume, overwrite)
    distributed.barrier()
    pipe = load_pipeline(str(model), dev, load_prior=False)  # the old prior is replaced, or its file may be gone
    tok = pipe.tokenizer
    pictures = PictureTally(tok.cfg.image_size, fit)
    ids, masks, labels, source = prior_training_data(pipe, data, tokens_file, classes, mask_head, progress_bar, fit,
                                                     pictures)
    if distributed.is_main():
        warn(mismatch_notice(pictures, tok.cfg.channels, str(model), remedy=None))
    config_class, model_class = (PriorConfig, Prior) if kind == "ar" else (MaskGITConfig, MaskGITPrior)
    extra = {k: v for k, v in (("min_mask_ratio", min_mask_ratio), ("label_smoothing", label_smoothing))
             if v is not None}
    try:
        pcfg = config_class(vocab_size=tok.vocab_size, tokens=tok.tokens_per_image, n_layer=n_layer, n_head=n_head,
                            n_embd=n_embd, num_classes=10 if classes else 0,
                            num_masks=tok.num_masks if masks is not None else 0, **extra)
    except ValueError as err:
        fail(str(err))
    torch.manual_seed(seed)
    net = model_class(pcfg)
    tcfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, checkpoint_every=checkpoint_every,
                       precision=precision)
    if distributed.is_main():
        console.print(f"training {where.title}: {net.num_parameters():,} parameters over {len(ids):,} sequences of "
                      f"{pcfg.tokens} tokens (vocabulary {pcfg.vocab_size}"
                      + (f", and a head for their {pcfg.num_masks} masks" if pcfg.num_masks else "")
                      + f"), {dev} x {distributed.world_size()}")
    if not resume and distributed.is_main():
        shutil.rmtree(run_dir, ignore_errors=True)  # only now that data and model are good: an older run's state goes
    distributed.barrier()
    with progress_bar(f"train {where.title}", steps, resume_step(run_dir, resume)) as bar:
        result = train_prior(net, ids, labels, tcfg, run_dir, dev, resume=resume,
                             on_step=lambda step, s: bar.advance(loss=s["loss"]), masks=masks)
    if not distributed.is_main():  # rank 0 alone writes the model folder
        distributed.cleanup()
        return
    record = training_record(tcfg, result, source, dev, command="mvq " + shlex.join(sys.argv[1:]), final_loss=True)
    # The other prior, beside the same tokenizer, stays, and so does an evaluation that sampled with it
    # (save_pipeline drops one that sampled with the prior replaced).
    save_pipeline(model, tok.cpu(), **{where.key: net.cpu(), where.record: record})
    shutil.rmtree(run_dir, ignore_errors=True)
    console.print(f"wrote {model / where.file}: final loss {result['loss']:.3f} nats/token"
                  + (" (on the masked positions)" if kind == "maskgit" else ""))
    distributed.cleanup()
