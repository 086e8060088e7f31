"""Training loops for the tokenizer and the prior, free of CLI concerns.

Data are in-memory uint8 arrays; batches come from a seeded permutation per epoch, so
the data position after a resume is a function of (seed, step) alone.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed
from .checkpoint import checkpoint_info, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import PRIOR_KINDS, TrainingRecord, to_dict
from .data import BadArgument, InputError
from .datasets import FASHION, fashion_labels, load_images
from .files import check_writable
from .hub import ATOMIC_TEMP, MODEL_ENTRIES, is_model_folder, read_config
from .images import DEFAULT_FIT, PictureTally, to_float
from .inference import encode_images
from .losses import ObjectiveConfig, TokenizerObjective
from .models import MaskGITPrior
from .models.prior import sequence_loss
from .progress import Progress, no_progress
from .tokenfile import read_token_file


@dataclass
class TrainConfig:
    steps: int = 2000  # optimizer steps
    batch_size: int = 128  # images (or token sequences) per step
    lr: float = 2e-3  # peak learning rate (AdamW)
    warmup: int = 100  # linear warm-up steps, then cosine decay to 10% of lr
    weight_decay: float = 0.0  # AdamW weight decay
    seed: int = 0  # model init, batch order and quantizer sampling
    checkpoint_every: int = 500  # steps between resumable checkpoints (0 = only at the end)
    precision: str = "fp32"  # fp32 | bf16 (autocast); resolve "auto" with resolve_precision first


PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (Intel AMX, AVX512-BF16). Without it oneDNN emulates bf16,
    and a bf16 training step ran 25x slower than fp32 on an AVX2-only AMD EPYC."""
    try:
        flags = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "").split()
    except OSError:  # not Linux: no cheap way to tell, so no
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 on a GPU or a CPU with native bf16, else fp32. A forced bf16 on a CPU without it warns."""
    if precision not in PRECISIONS:
        raise BadArgument("precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native:
        warnings.warn(f"bf16 on a {device.type} without native bf16 is emulated and many times slower than fp32 "
                      "(use --precision auto or fp32)", stacklevel=2)
    return precision


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class BatchOrder:
    """Seeded epoch permutations: batch `step` is reproducible after a resume."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.per_epoch = max(1, n // batch_size)
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> torch.Tensor:
        epoch, offset = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        batch = self._perm[offset * self.batch_size : (offset + 1) * self.batch_size]
        return batch[self.rank :: self.world]  # each rank takes its share of the global batch


StepCallback = Callable[[int, dict], None]


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _run(model: torch.nn.Module, step_loss: Callable[..., tuple[torch.Tensor, dict]],
         n: int, cfg: TrainConfig, run_dir: Path, name: str, device: torch.device, resume: bool,
         on_step: StepCallback | None, info: dict) -> dict:
    """The shared loop: AdamW, warm-up + cosine, checkpoints, resume; DDP when under torchrun."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    start, history = 0, []  # history: (step, loss) about 100 times a run, kept in config.json
    if resume and (ckpt := latest_checkpoint(run_dir)) is not None:
        saved = load_checkpoint(ckpt, {name: model}, opt)
        start, history = saved["step"], list(saved.get("history", []))
    world, rank = distributed.world_size(), distributed.rank()
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} must be divisible by the {world} processes")
    order = BatchOrder(n, cfg.batch_size, cfg.seed, rank, world)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    model.train()
    stats: dict = {}
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with _autocast(device, cfg.precision):
            loss, stats = step_loss(net, order.indices(step), step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stats = {"loss": _mean_over_ranks(loss.detach()), **stats}
        done = step + 1
        if done % max(1, cfg.steps // 100) == 0:
            history.append([done, round(stats["loss"], 6)])
        if on_step is not None and rank == 0:
            on_step(done, stats)
        if done == cfg.steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
            if rank == 0:
                save_checkpoint(run_dir, done, {name: model}, opt, {**info, "history": history})
            distributed.barrier()
    model.eval()
    return {**stats, "seconds": time.perf_counter() - t0, "resumed_from": start, "history": history}


def _mean_over_ranks(value: torch.Tensor) -> float:
    """The loss of the whole global batch, not just this rank's share."""
    if distributed.world_size() > 1:
        value = value.clone()
        torch.distributed.all_reduce(value)
        value /= distributed.world_size()
    return value.item()


def train_tokenizer(model, images: np.ndarray, cfg: TrainConfig, run_dir: Path, device: torch.device,
                    resume: bool = False, on_step: StepCallback | None = None,
                    objective: ObjectiveConfig | None = None, feature_net=None) -> dict:
    """Fit a Tokenizer to uint8 images (N, H, W[, C]) by MSE + the quantizer's loss, and the adversarial and
    feature terms `objective` asks for (`feature_net`: a classifier.Classifier, for the feature distance)."""
    torch.manual_seed(cfg.seed)
    data = torch.from_numpy(np.array(images, dtype=np.uint8))  # a private, writable copy
    objective = objective or ObjectiveConfig()
    if objective.adversarial_weight > 0 and distributed.world_size() > 1:
        raise ValueError("the adversarial loss is not available in data-parallel training yet: train it in one "
                         "process")
    trained = TokenizerObjective(model, objective, feature_net).to(device)
    with_critic = trained.critic is not None
    started = dataclasses.asdict(objective)
    if resume and (ckpt := latest_checkpoint(run_dir)) is not None:
        before = {**dataclasses.asdict(ObjectiveConfig()), **checkpoint_info(ckpt).get("objective", {})}
        if before != started:
            given = " ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in before.items())
            raise ValueError(f"{ckpt} was trained with {given}: resume with the same options")

    def step_loss(net, idx: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        x = to_float(data[idx]).to(device)
        # Through the (DDP) wrapper's forward where there is one, so gradients are averaged over ranks.
        return trained(x, step) if with_critic else trained(x, step, net=net)

    # Without a critic the optimizer and the checkpoint hold the tokenizer alone, as they always have.
    return _run(trained if with_critic else model, step_loss, len(data), cfg, Path(run_dir),
                "tokenizer-critic" if with_critic else "tokenizer", device, resume, on_step,
                {"kind": "tokenizer", "objective": started})


def train_prior(prior, tokens: np.ndarray, labels: np.ndarray | None, cfg: TrainConfig, run_dir: Path,
                device: torch.device, resume: bool = False, on_step: StepCallback | None = None,
                masks: np.ndarray | None = None) -> dict:
    """Fit a prior to token rows (N, T) (and their masks (N, T), for a prior with a mask head): an AR Prior by
    next-token cross-entropy, a MaskGITPrior by cross-entropy on the positions it masks."""
    torch.manual_seed(cfg.seed)
    data = torch.from_numpy(tokens.astype(np.int64))
    mask_data = torch.from_numpy(masks.astype(np.int64)) if masks is not None else None
    lab = torch.from_numpy(labels.astype(np.int64)) if labels is not None else None
    prior.to(device)

    def step_loss(net, idx: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        y = lab[idx].to(device) if lab is not None else None
        tokens = data[idx].to(device)
        m = mask_data[idx].to(device) if mask_data is not None else None
        # Through the (DDP) wrapper's forward, so gradients are averaged over ranks.
        if maskgit:
            return prior.loss(tokens, y, m, net=net), {}
        return sequence_loss(net(tokens, y, m), tokens, m), {}

    maskgit = isinstance(prior, MaskGITPrior)
    return _run(prior, step_loss, len(data), cfg, Path(run_dir), "prior", device, resume, on_step,
                {"kind": "maskgit-prior" if maskgit else "prior"})


def resume_step(run_dir: Path, resume: bool) -> int:
    """Where a resumed run will start, so the progress bar starts there too."""
    ckpt = latest_checkpoint(run_dir) if resume else None
    return int(ckpt.name.split("-")[1]) if ckpt else 0


def check_tokenizer_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse, before anything is written or deleted, an OUT this run must not replace or cannot write."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    check_writable(folders=[out, out.parent])  # the folder itself, and its parent for the final swap
    entries = sorted(e.name for e in out.iterdir()) if out.is_dir() else []
    ckpt = latest_checkpoint(out / "checkpoints")
    if resume:
        if ckpt is None:
            raise InputError(f"{out}: nothing to resume (no checkpoint in {out / 'checkpoints'}); "
                             + ("pass --overwrite to train it again from the start" if entries else "train without --resume"))
        return
    if not entries:
        return
    if not overwrite:
        raise InputError(f"{out} exists and is not empty: pass --resume to continue training or --overwrite to "
                         "replace it")
    foreign = [name for name in entries if name not in MODEL_ENTRIES and not ATOMIC_TEMP.match(name)]
    if foreign or not (is_model_folder(out) or ckpt is not None):
        why = (f"it holds {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}" if foreign
               else "no config.json with mvq_format")
        raise InputError(f"{out} is not a model folder written by mvq ({why}): --overwrite only replaces model "
                         "folders, so nothing was touched; name another output folder")
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # an older run's state must not mix with this one's


def check_prior_out(model: Path, kind: str, resume: bool, overwrite: bool) -> Path:
    """An existing prior of this kind ("ar", "maskgit") is replaced only with --overwrite; --resume needs a
    checkpoint to resume from. Returns the run's checkpoint folder. (A run that starts afresh must then remove
    an older run's checkpoints, once its data and model are good.)"""
    check_writable(folders=[model])
    cfg = read_config(model)
    cfg.check_rewritable()  # before training: its config.json could not be rewritten at the end
    where = PRIOR_KINDS[kind]
    run_dir = model / where.checkpoints
    ckpt = latest_checkpoint(run_dir)
    if resume:
        if ckpt is None:
            raise InputError(f"{model}: nothing to resume (no checkpoint in {run_dir}); train without --resume")
        return run_dir
    if not overwrite and (getattr(cfg, where.key) is not None or (model / where.file).exists()):
        raise InputError(f"{model} already has its {where.title} ({where.file}): pass --overwrite to replace it")
    if not overwrite and ckpt is not None:
        raise InputError(f"{model} holds an interrupted run of its {where.title} ({ckpt}): pass --resume to "
                         "continue it or --overwrite to start again")
    return run_dir


def training_record(cfg: TrainConfig, result: dict, data: str, device: torch.device | str,
                    command: str | None = None, final_loss: bool = False, objective: ObjectiveConfig | None = None,
                    feature_net: str | None = None, init_from: str | None = None) -> TrainingRecord:
    """What config.json keeps of a run: its settings, where it ran, how long, and the loss history (and, for a
    tokenizer, the terms of its objective beyond MSE and the model it started from)."""
    extra: dict = {}
    if objective is not None and objective.adversarial_weight:
        extra.update(adversarial_weight=objective.adversarial_weight, adversarial_start=objective.adversarial_start)
    if objective is not None and objective.feature_weight:
        extra.update(feature_weight=objective.feature_weight, feature_net=feature_net)
    return TrainingRecord(command=command, data=data, **to_dict(cfg), **extra, init_from=init_from,
                          seconds=round(result["seconds"], 1),
                          device=str(device), resumed_from=result["resumed_from"],
                          processes=distributed.world_size(), loss_history=result["history"],
                          final_loss=round(result["loss"], 4) if final_loss else None)


def prior_training_data(pipe, data: str = FASHION, tokens_file: str | Path | None = None, classes: bool = False,
                        mask_head: bool = True, progress: Progress = no_progress, fit: str = DEFAULT_FIT,
                        tally: PictureTally | None = None
                        ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, str]:
    """(token ids (N, T), their masks or None, class labels or None, a description of the source) to fit a
    prior to: a token file from `mvq encode` (checked against the tokenizer), or the images of `data` (fitted by
    `fit`, counted in `tally`), encoded.
    Masks come with them for a tokenizer with sampled masks when the prior gets a mask head."""
    tok = pipe.tokenizer
    with_masks = bool(tok.num_masks and mask_head)
    if tokens_file is not None:
        if classes:
            raise BadArgument("classes", "a class-conditional prior needs labels: train on fashion-mnist, not a "
                                         "token file")
        ids, masks = read_token_file(tokens_file, pipe, with_masks)
        if with_masks and masks is None:
            raise BadArgument("tokens_file", f"{tokens_file} has no masks beside it (TOKENS.masks.npy): encode with "
                                             "`mvq encode`, or train without the mask head (--no-mask-head)")
        return ids, masks, None, str(tokens_file)
    if classes and data != FASHION:
        raise BadArgument("classes", f"a class-conditional prior is only available on {FASHION} (its labels)")
    images = load_images(data, "train", tok.cfg.image_size, tok.cfg.channels, progress=progress, fit=fit, tally=tally)
    with progress("encode", len(images)) as bar:
        ids, masks = encode_images(tok, images, device=pipe.device, on_batch=bar.advance)
    return ids, masks if with_masks else None, fashion_labels("train") if classes else None, data
