"""The runs of the comparison: the `mvq` commands of a run (tokenizer, prior, eval) and of the benchmark, the
state of a run folder (what is done, what was trained with other settings), adoption of finished models, and
running the commands with skip/resume."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tokenizer_cli.config import DEFAULT_SUBSET_RATIO, ModelConfig, QuantizerConfig, TrainingRecord, to_dict
from tokenizer_cli.hub import BadCheckpoint, read_config, weights_digest  # the same hash `mvq eval` stores

from .plan import FASHION, MASKED, Spec

PRIOR_SIZE = ("--layers", "4", "--heads", "4", "--width", "128")  # the same for every model: timings compare
PRIOR_DEFAULTS = {"n_layer": 4, "n_head": 4, "n_embd": 128}


# ---------------------------------------------------------------- commands


def mvq_command() -> list[str]:
    """The `mvq` entry point of this interpreter's environment (falls back to `python -m tokenizer_cli`)."""
    beside = Path(sys.executable).parent / "mvq"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("mvq")
    return [found] if found else [sys.executable, "-m", "tokenizer_cli"]


@dataclass
class Settings:
    out: Path
    steps: int
    prior_steps: int
    seeds: list[int]
    batch_size: int
    base_channels: int
    data: str
    image_size: int
    channels: int
    eval_limit: int | None
    feature_net: str | None
    device: str
    bench_repeats: int
    precision: str | None = None  # --precision of the trainings (None: mvq's default, auto)
    res_blocks: int = 1  # residual blocks at each resolution of every tokenizer (mvq's default: 1)

    def split(self, name: str) -> str:
        """The data of one split: fashion-mnist itself, or the folder's `name` subfolder where it has one, as
        its packed images.npy where prepare_pictures.py wrote one (read in seconds, where decoding the same
        70,000 PNGs takes two minutes a command)."""
        if self.data == FASHION:
            return FASHION
        d = Path(self.data)
        folder = d / name if (d / name).is_dir() else d
        return str(folder / "images.npy") if (folder / "images.npy").is_file() else str(folder)

    @property
    def precision_args(self) -> list[str]:
        return ["--precision", self.precision] if self.precision else []

    @property
    def train_data(self) -> str:
        return self.split("train")

    @property
    def eval_data(self) -> str:
        return self.split("test")


def same_data(source: str | None) -> str | None:
    """A split named by its folder or by the folder's packed images.npy: the same data (runs finished before
    compare.py read images.npy recorded the folder)."""
    return str(Path(source).parent) if source and Path(source).name == "images.npy" else source


def run_dir(st: Settings, spec: Spec, seed: int) -> Path:
    return st.out / "runs" / f"{spec.name}-s{seed}"


def prior_batch(tokens: int) -> int:
    """As scripts/train_shipped_priors.sh: long sequences cost more per step, so fewer a batch."""
    return 256 if tokens <= 5 else 128 if tokens <= 16 else 64


def tokenizer_cmd(st: Settings, spec: Spec, seed: int, resume: bool) -> list[str]:
    return [*mvq_command(), "train", "tokenizer", str(run_dir(st, spec, seed)), *spec.quantizer_args(),
            "--data", st.train_data, "--image-size", str(st.image_size), "--channels", str(st.channels),
            "--steps", str(st.steps), "--batch-size", str(st.batch_size), "--base-channels", str(st.base_channels),
            *(["--res-blocks", str(st.res_blocks)] if st.res_blocks != 1 else []), "--seed", str(seed),
            "--device", st.device, *st.precision_args, "--resume" if resume else "--overwrite"]


def prior_cmd(st: Settings, spec: Spec, seed: int, resume: bool) -> list[str]:
    cmd = [*mvq_command(), "train", "prior", str(run_dir(st, spec, seed)), "--data", st.train_data, *PRIOR_SIZE,
           "--steps", str(st.prior_steps), "--batch-size", str(prior_batch(spec.tokens)), "--seed", str(seed),
           "--device", st.device, *st.precision_args]
    return cmd + (["--resume"] if resume else ["--overwrite"])  # a prior of an older tokenizer goes


def eval_cmd(st: Settings, spec: Spec, seed: int) -> list[str]:
    d = run_dir(st, spec, seed)
    cmd = [*mvq_command(), "eval", "--model", str(d), "--data", st.eval_data, "--json", str(d / "eval.json"),
           "--seed", str(seed), "--device", st.device]
    if st.eval_limit is not None:
        cmd += ["--limit", str(st.eval_limit)]
    if st.feature_net:
        cmd += ["--feature-net", st.feature_net]
    return cmd


def benchmark_cmd(st: Settings, dirs: list[Path], tokens: int) -> list[str]:
    cmd = [*mvq_command(), "benchmark", "--tokens", str(tokens), "--repeats", str(st.bench_repeats),
           "--json", str(st.out / "benchmark.json"), "--device", st.device]
    for d in dirs:
        cmd += ["--model", str(d)]
    return cmd


# ---------------------------------------------------------------- state of a run


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_model(d: Path) -> ModelConfig | None:
    """A run folder's config.json, typed; None where there is none or it does not parse."""
    if not (d / "config.json").is_file():
        return None
    try:
        return read_config(d)
    except BadCheckpoint:
        return None


def tokenizer_done(d: Path) -> bool:
    cfg = read_model(d)
    return bool(cfg and cfg.metrics is not None and (d / "tokenizer.safetensors").is_file())


def prior_done(d: Path) -> bool:
    cfg = read_model(d)
    return bool(cfg and cfg.prior_training is not None and (d / "prior.safetensors").is_file())


def eval_done(st: Settings, d: Path) -> bool:
    ev = read_json(d / "eval.json")
    if not ev or ev.get("weights_sha256") != weights_digest(d) or ev.get("generation_fd") is None:
        return False
    limited = "--limit" in shlex.split(ev.get("command", ""))
    if st.eval_limit is None:
        return not limited
    return limited and ev.get("images", 0) <= st.eval_limit


def mismatches(st: Settings, spec: Spec, seed: int, d: Path | None = None) -> list[str]:
    """How a completed run's recorded settings (in run_dir, or folder d) differ from what this invocation asks for."""
    d = run_dir(st, spec, seed) if d is None else d
    cfg = read_model(d)
    bad = []

    def want(what: str, have, wanted) -> None:
        if have is not None and have != wanted:
            bad.append(f"{what} {have} (asked: {wanted})")

    if tokenizer_done(d):
        tokenizer_mismatches(st, spec, seed, cfg, want)
    if prior_done(d):
        prior_mismatches(st, spec, seed, cfg, want)
    return bad


def tokenizer_mismatches(st: Settings, spec: Spec, seed: int, cfg: ModelConfig, want) -> None:
    """Calls want(what, recorded, asked) for each setting of the tokenizer's training and quantizer."""
    tr, tok = cfg.training or TrainingRecord(), cfg.tokenizer
    want("steps", tr.steps, st.steps)
    want("batch size", tr.batch_size, st.batch_size)
    want("seed", tr.seed, seed)
    want("data", same_data(tr.data), same_data(st.train_data))
    if st.precision:
        want("precision", tr.precision, st.precision)
    want("base channels", tok.base_channels, st.base_channels)
    want("residual blocks", tok.res_blocks, st.res_blocks)
    want("image size", tok.image_size, st.image_size)
    want("channels", tok.channels, st.channels)
    want("tokens", tok.tokens, spec.tokens)
    want("layout", tok.layout, spec.layout)
    q = tok.quantizer  # older formats are read as what they meant
    default = QuantizerConfig(kind=spec.quantizer)  # that kind's defaults
    want("quantizer", q.kind, spec.quantizer)
    if spec.quantizer == "fsq":
        want("levels", q.levels, list(spec.levels))
    else:
        want("code vectors", q.num_codes, spec.K)
    if spec.quantizer in MASKED:
        want("mask bits", q.mask_bits, spec.g)
        want("subset ratio", q.subset_ratio,
             spec.subset_ratio if spec.subset_ratio is not None else DEFAULT_SUBSET_RATIO[spec.quantizer])
        want("hypothesis form", q.hypothesis_form, spec.form or default.hypothesis_form)
    if spec.quantizer == "mvq-joint":
        want("winner", q.winner, spec.winner or default.winner)
    if spec.quantizer == "mvq":
        want("mask scope", q.mask_scope, spec.scope or default.mask_scope)
        want("mask gradient", q.mask_gradient, spec.gradient or default.mask_gradient)


def prior_mismatches(st: Settings, spec: Spec, seed: int, cfg: ModelConfig, want) -> None:
    """Calls want(what, recorded, asked) for each setting of the prior's training and size."""
    pt = cfg.prior_training or TrainingRecord()
    want("prior steps", pt.steps, st.prior_steps)
    want("prior batch size", pt.batch_size, prior_batch(spec.tokens))
    want("prior seed", pt.seed, seed)
    if st.precision:
        want("prior precision", pt.precision, st.precision)
    for key, value in PRIOR_DEFAULTS.items():
        want(f"prior {key}", getattr(cfg.prior, key, None), value)


def adopt(st: Settings, runs: list[tuple[Spec, int]], folders: list[Path], dry: bool) -> None:
    """Copy finished model folders (e.g. the shipped weights/) into the runs they are, setting for setting.

    A folder is adopted for a run when its tokenizer and prior were trained with exactly this invocation's
    settings (the same check that refuses a stale run) and the run has no tokenizer of its own yet. Its
    card's `eval` section becomes eval.json when it was measured on these weights with the same limit.
    """
    for src in folders:
        if not (tokenizer_done(src) and prior_done(src)):
            print(f"# --adopt {src}: no finished tokenizer and prior there, ignored")
            continue
        match = [(spec, seed) for spec, seed in runs if not mismatches(st, spec, seed, src)]
        if not match:
            print(f"# --adopt {src}: trained with other settings than every selected run, ignored")
            continue
        spec, seed = match[0]
        d = run_dir(st, spec, seed)
        if tokenizer_done(d):
            print(f"# --adopt {src}: {spec.name}-s{seed} has its own tokenizer, ignored")
            continue
        print(f"# {spec.name}-s{seed}: adopted from {src}")
        if dry:
            continue
        d.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer.safetensors", "prior.safetensors", "config.json", "README.md"):
            if (src / name).is_file():
                shutil.copy2(src / name, d / name)
        cfg = read_model(d)
        if cfg is not None and cfg.eval is not None:
            (d / "eval.json").write_text(json.dumps(to_dict(cfg.eval), indent=1) + "\n")
            if not eval_done(st, d):  # other weights or another --limit: measure again
                (d / "eval.json").unlink()


# ---------------------------------------------------------------- running


def show(cmd: list[str]) -> str:
    return shlex.join(cmd)


def run(cmd: list[str], dry: bool, note: str = "") -> bool:
    print(("# " + note + "\n" if note else "") + show(cmd), flush=True)
    if dry:
        return True
    t0 = time.time()
    rc = subprocess.call(cmd)  # the environment (OMP_NUM_THREADS, ...) passes through untouched
    if rc != 0:
        print(f"# FAILED (exit code {rc}) after {time.time() - t0:.0f} s", flush=True)
    return rc == 0


def run_one(st: Settings, spec: Spec, seed: int, dry: bool) -> bool:
    d = run_dir(st, spec, seed)
    label = f"{spec.name}-s{seed}"
    if tokenizer_done(d):
        print(f"# {label}: tokenizer complete, skipped")
    else:
        resume = (d / "checkpoints" / "latest").is_file()
        if not run(tokenizer_cmd(st, spec, seed, resume), dry,
                   f"{label}: train tokenizer" + (" (resuming)" if resume else "")):
            return False
    if prior_done(d):
        print(f"# {label}: prior complete, skipped")
    else:
        resume = (d / "checkpoints-prior" / "latest").is_file()
        if not run(prior_cmd(st, spec, seed, resume), dry, f"{label}: train prior" + (" (resuming)" if resume else "")):
            return False
    if eval_done(st, d):
        print(f"# {label}: eval complete, skipped")
        return True
    return run(eval_cmd(st, spec, seed), dry, f"{label}: eval")


def benchmark_done(st: Settings, dirs: list[Path]) -> bool:
    path = st.out / "benchmark.json"
    bench = read_json(path)
    if not bench:
        return False
    timed = {str(Path(r["model"])) for r in bench.get("rows", [])}
    if timed != {str(d) for d in dirs}:
        return False
    newest = max((d / "prior.safetensors").stat().st_mtime for d in dirs)
    return path.stat().st_mtime >= newest and bench.get("repeats") == st.bench_repeats
