"""Resumable training state without pickles: model, optimizer, RNG and step in safetensors + JSON.

Each checkpoint is a complete folder `step-XXXXXXX/`; the file `latest` names the newest
complete one and is replaced atomically after the folder is written, so a run killed at
any moment resumes from the last checkpoint that was whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .files import fsync_path
from .hub import BadCheckpoint


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, slots in state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"opt.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run_dir: Path, step: int, models: dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
                    info: dict, keep: int = 2) -> Path:
    run_dir = Path(run_dir)
    final = run_dir / f"step-{step:07d}"
    tmp = run_dir / f".tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, model in models.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp / f"{name}.safetensors")
    opt_tensors, opt_meta = _optimizer_tensors(opt)
    opt_tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            opt_tensors[f"rng.cuda.{i}"] = state
    save_file(opt_tensors, tmp / "trainer.safetensors")
    (tmp / "trainer.json").write_text(json.dumps({"step": step, "optimizer": opt_meta, **info}))
    for file in tmp.iterdir():
        fsync_path(file)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer = run_dir / ".latest.tmp"
    pointer.write_text(final.name)
    fsync_path(pointer)
    os.replace(pointer, run_dir / "latest")
    fsync_path(run_dir)  # the renames themselves reach the disk
    for old in sorted(run_dir.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


STEP_NAME = re.compile(r"^step-\d{7,}$")


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, or None when there is none (or the pointer is not ours)."""
    pointer = Path(run_dir) / "latest"
    try:
        name = pointer.read_text(errors="replace").strip()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    if not STEP_NAME.match(name):
        return None
    folder = Path(run_dir) / name
    return folder if (folder / "trainer.json").is_file() else None


def checkpoint_info(folder: Path) -> dict:
    """What a checkpoint says of its run (trainer.json, without the optimizer state); {} where it cannot be read
    (load_checkpoint then says why in one line)."""
    try:
        info = json.loads((Path(folder) / "trainer.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in info.items() if k != "optimizer"} if isinstance(info, dict) else {}


def load_checkpoint(folder: Path, models: dict[str, torch.nn.Module], opt: torch.optim.Optimizer) -> dict:
    """Restore models, optimizer and RNG in place; returns the saved info (with 'step').

    Every failure is one BadCheckpoint line naming the checkpoint: a file missing, unreadable or corrupt,
    or weights of another architecture than the model being resumed.
    """
    hint = "delete it to start again, or train without --resume"
    try:
        for name, model in models.items():
            try:
                model.load_state_dict(load_file(folder / f"{name}.safetensors"), strict=True)
            except RuntimeError as err:  # missing, unexpected or differently shaped tensors
                raise BadCheckpoint(f"{folder}: the checkpoint is of another architecture than this command's "
                                    f"options ({str(err).splitlines()[0]} ...); resume with the options it was "
                                    f"started with, or {hint}") from None
        info = json.loads((folder / "trainer.json").read_text())
        tensors = load_file(folder / "trainer.safetensors")
        torch.set_rng_state(tensors.pop("rng.torch"))
        cuda_states = [tensors.pop(k) for k in sorted((k for k in list(tensors) if k.startswith("rng.cuda.")),
                                                       key=lambda k: int(k.rsplit(".", 1)[1]))]
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        opt.load_state_dict(_optimizer_state(tensors, info.pop("optimizer")))
        int(info["step"])
    except BadCheckpoint:
        raise
    except (OSError, SafetensorError, ValueError, KeyError, TypeError, RuntimeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BadCheckpoint(f"{folder}: corrupt or incomplete checkpoint ({type(err).__name__}: {reason}); {hint}") from None
    return info
