"""The paper's comparison, VQ vs FSQ vs MVQ, reproducibly, through the same `mvq` commands users run.

Usage:
    python scripts/compare.py [--out runs/compare] [--steps 1500] [--prior-steps 3000] [--seeds 0 1 2]
                              [--only NAME_OR_GLOB ...] [--data fashion-mnist|FOLDER --image-size S --channels C]
                              [--eval-limit N] [--feature-net NAME] [--device auto] [--no-benchmark] [--dry-run]
                              [--adopt weights/*]   # reuse finished models trained with exactly these settings
    python scripts/compare.py --list        # the run names of the grid

The grid (names as in --only; one run per name and seed):
  T in {2, 5}, K in {4, 16, 64}:  mvq-kKg4-tT (MVQ with sampled masks, the paper's reading: vocabulary K),
                                 mvqj-kKg4-tT (MVQ with joint tokens: vocabulary 15K) and vq-kK-tT (same K: the
                                 paper's axis); vq-k{15K}-tT and fsq-...-tT (the joint vocabulary: the fair axis)
  more tokens:                   mvq-k16g4-t8, mvq-k16g4-t16 (MVQ towards the long baselines' quality)
  long-sequence VQ baselines:    vq-k16-t16 (1d) and vq-k16-grid49 (7x7 grid; 8x8 = 64 for 32/64 px images)
  MVQ ablations (only when named in --only, see ablations()): sampled masks with one mask per image
                                 (-image-), the straight-through cut (-st-), MH-Dropout's form (-mhd-), subset
                                 ratio 1.0 / 0.75 (-r1-, -r075-); joint tokens with ratio 0.5 / 0.25, winner code,
                                 g=6 and g=2
Every tokenizer is trained with the same data, --steps, --batch-size 128, --base-channels 16 and seed
(as scripts/train_shipped.sh does), every prior with the same size (4 layers, 4 heads, width 128) and
--prior-steps (batch 256, or 128 / 64 for the long sequences, as scripts/train_shipped_priors.sh does).

For each run, into OUT/runs/<name>-s<seed>/:
  1. `mvq train tokenizer`   skipped when config.json has its metrics; --resume when checkpoints/latest exists
  2. `mvq train prior`       skipped when prior.safetensors is there; --resume when checkpoints-prior/latest exists
  3. `mvq eval --json eval.json`   skipped when eval.json is there for the same weights and --eval-limit
then one `mvq benchmark --model RUN ... --json OUT/benchmark.json` over all runs (sampling time per image,
all models in one process on one device; redone when a prior is newer than it or the set of runs changed).
A run that was completed with other settings (steps, seed, ...) is an error: use another --out.
Interrupt and re-run at will: finished stages are skipped, interrupted trainings resume.

Writes OUT/results.json (settings and one row per run), OUT/results.md (mean ± std over seeds, and MVQ
against VQ at the same K and against VQ/FSQ at the same vocabulary, relative FD change in %), and
OUT/fd_vs_tokens.png, OUT/fd_vs_time.png (generation FD against tokens per image and against sampling
time per image at batch 64), drawn with Pillow. The thread count is whatever OMP_NUM_THREADS says.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tokenizer_cli.hub import weights_digest  # the same hash `mvq eval` stores
from tokenizer_cli.config import DEFAULT_SUBSET_RATIO, MASKED_KINDS, QuantizerConfig, tokenizer_config_of

MASKED = MASKED_KINDS

FASHION = "fashion-mnist"
PRIOR_SIZE = ("--layers", "4", "--heads", "4", "--width", "128")  # the same for every model: timings compare
PRIOR_DEFAULTS = {"n_layer": 4, "n_head": 4, "n_embd": 128}


# ---------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Spec:
    """One tokenizer configuration of the grid (a run is a Spec and a seed)."""

    name: str
    quantizer: str  # vq | fsq | mvq (sampled masks, token = code id) | mvq-joint (token = code id x mask)
    tokens: int
    layout: str = "1d"
    K: int | None = None  # code vectors (vq, mvq, mvq-joint)
    g: int | None = None  # mask bits (mvq, mvq-joint)
    levels: tuple[int, ...] | None = None  # fsq
    group: str = ""  # small | large | xl | more | long | ablation
    subset_ratio: float | None = None  # --subset-ratio (None: the CLI default of the kind)
    winner: str | None = None  # mvq-joint: --winner (None: the CLI default, all)
    scope: str | None = None  # mvq: --mask-scope (None: token)
    gradient: str | None = None  # mvq: --mask-gradient (None: winner)
    form: str | None = None  # mvq, mvq-joint: --hypothesis-form (None: residual)

    @property
    def vocab(self) -> int:
        if self.quantizer == "fsq":
            return math.prod(self.levels)
        if self.quantizer == "mvq-joint":
            return self.K * (2**self.g - 1)
        return self.K

    @property
    def options(self) -> list[str]:
        """The non-default MVQ options, for labels."""
        out = [] if self.subset_ratio is None else [f"ratio {self.subset_ratio:g}"]
        out += [f"winner {self.winner}"] if self.winner else []
        out += [f"{self.scope} masks"] if self.scope else []
        out += [self.gradient] if self.gradient else []
        out += [f"{self.form} form"] if self.form else []
        return out

    @property
    def short(self) -> str:
        """A short label for plots: K16g4, joint K16g4, K240, 8x6x5."""
        if self.quantizer == "fsq":
            return "x".join(map(str, self.levels))
        if self.quantizer in MASKED:
            extra = "".join(f" {o}" for o in self.options)
            return ("joint " if self.quantizer == "mvq-joint" else "") + f"K{self.K}g{self.g}{extra}"
        return f"K{self.K}"

    @property
    def describe(self) -> str:
        if self.quantizer == "fsq":
            return "FSQ " + "x".join(map(str, self.levels))
        if self.quantizer in MASKED:
            what = "MVQ joint" if self.quantizer == "mvq-joint" else "MVQ sampled"
            return f"{what} K={self.K}, g={self.g}" + "".join(f", {o}" for o in self.options)
        return f"VQ K={self.K}"

    def quantizer_args(self) -> list[str]:
        args = ["--quantizer", self.quantizer, "--tokens", str(self.tokens)]
        if self.layout != "1d":
            args += ["--layout", self.layout]
        if self.quantizer == "fsq":
            args += ["--levels", ",".join(map(str, self.levels))]
        else:
            args += ["--num-codes", str(self.K)]
        if self.quantizer in MASKED:
            args += ["--mask-bits", str(self.g)]
        for flag, value in (("--subset-ratio", self.subset_ratio), ("--winner", self.winner),
                            ("--mask-scope", self.scope), ("--mask-gradient", self.gradient),
                            ("--hypothesis-form", self.form)):
            if value is not None:
                args += [flag, str(value)]
        return args


FAIR_FSQ = {60: (5, 4, 3), 240: (8, 6, 5), 960: (8, 10, 12)}  # FSQ levels with the joint vocabulary K*15


def grid_tokens(image_size: int) -> int:
    """T of the grid-layout baseline: the largest side <= 8 with image_size / side a power of two >= 4."""
    side = image_size >> 2
    while side > 8 and side % 2 == 0:
        side //= 2
    return side * side


def grid(image_size: int = 28) -> list[Spec]:
    """The paper's axis (MVQ with sampled masks, MVQ with joint tokens and VQ at the same K) and the fair axis
    (VQ and FSQ with the joint vocabulary K*15), for K in {4, 16, 64} at T in {2, 5}; MVQ at more tokens;
    the long-sequence VQ baselines."""
    specs = []
    for t in (2, 5):
        for k, group in ((4, "small"), (16, "large"), (64, "xl")):
            specs += [
                Spec(f"mvq-k{k}g4-t{t}", "mvq", t, K=k, g=4, group=group),
                Spec(f"mvqj-k{k}g4-t{t}", "mvq-joint", t, K=k, g=4, group=group),
                Spec(f"vq-k{k}-t{t}", "vq", t, K=k, group=group),
                Spec(f"vq-k{k * 15}-t{t}", "vq", t, K=k * 15, group=group),
                Spec(f"fsq-{'x'.join(map(str, FAIR_FSQ[k * 15]))}-t{t}", "fsq", t, levels=FAIR_FSQ[k * 15], group=group),
            ]
    specs += [Spec(f"mvq-k16g4-t{t}", "mvq", t, K=16, g=4, group="more") for t in (8, 16)]
    gt = grid_tokens(image_size)
    specs += [Spec("vq-k16-t16", "vq", 16, K=16, group="long"),
              Spec(f"vq-k16-grid{gt}", "vq", gt, layout="grid", K=16, group="long")]
    return specs


def ablations() -> list[Spec]:
    """MVQ variants at K=16 (run only when named in --only). Sampled masks: one mask per image, the
    straight-through cut instead of the decoder's gradient into the winner, MH-Dropout's hypothesis form,
    subset ratios 1.0 and 0.75. Joint tokens: subset ratio 0.5 / 0.25, winner 'code', fewer masks."""
    return [Spec("mvq-k16g4-image-t2", "mvq", 2, K=16, g=4, group="ablation", scope="image"),
            Spec("mvq-k16g4-image-t5", "mvq", 5, K=16, g=4, group="ablation", scope="image"),
            Spec("mvq-k16g4-st-t2", "mvq", 2, K=16, g=4, group="ablation", gradient="straight-through"),
            Spec("mvq-k16g4-mhd-t2", "mvq", 2, K=16, g=4, group="ablation", form="mhd"),
            Spec("mvq-k16g4-r1-t2", "mvq", 2, K=16, g=4, group="ablation", subset_ratio=1.0),
            Spec("mvq-k16g4-r075-t2", "mvq", 2, K=16, g=4, group="ablation", subset_ratio=0.75)] + \
        [Spec(f"mvqj-k16g4-r05-t{t}", "mvq-joint", t, K=16, g=4, group="ablation", subset_ratio=0.5) for t in (2, 5)] + [
        Spec("mvqj-k16g4-r025-t2", "mvq-joint", 2, K=16, g=4, group="ablation", subset_ratio=0.25),
        Spec("mvqj-k16g4-wcode-t2", "mvq-joint", 2, K=16, g=4, group="ablation", winner="code"),
        Spec("mvqj-k4g6-t2", "mvq-joint", 2, K=4, g=6, group="ablation"),
        Spec("mvqj-k16g2-t2", "mvq-joint", 2, K=16, g=2, group="ablation")]


def comparisons(specs: list[Spec]) -> list[tuple[str, Spec, Spec]]:
    """(axis, MVQ spec, baseline spec): 'same K' (the paper's axis) and 'same vocabulary' (the fair one)."""
    out = []
    for m in (s for s in specs if s.quantizer in MASKED):
        for b in specs:
            if b.tokens != m.tokens or b.layout != m.layout or b.quantizer in MASKED:
                continue
            if b.quantizer == "vq" and b.K == m.K:
                out.append(("same K", m, b))
            elif b.vocab == m.vocab:
                out.append(("same vocabulary", m, b))
    return out


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

    @property
    def train_data(self) -> str:
        if self.data == FASHION:
            return FASHION
        d = Path(self.data)
        return str(d / "train") if (d / "train").is_dir() else str(d)

    @property
    def eval_data(self) -> str:
        if self.data == FASHION:
            return FASHION
        d = Path(self.data)
        return str(d / "test") if (d / "test").is_dir() else str(d)


def run_dir(st: Settings, spec: Spec, seed: int) -> Path:
    return st.out / "runs" / f"{spec.name}-s{seed}"


def prior_batch(tokens: int) -> int:
    """As scripts/train_shipped_priors.sh: long sequences cost more per step, so fewer a batch."""
    return 256 if tokens <= 5 else 128 if tokens <= 16 else 64


def tokenizer_cmd(st: Settings, spec: Spec, seed: int, resume: bool) -> list[str]:
    return [*mvq_command(), "train", "tokenizer", str(run_dir(st, spec, seed)), *spec.quantizer_args(),
            "--data", st.train_data, "--image-size", str(st.image_size), "--channels", str(st.channels),
            "--steps", str(st.steps), "--batch-size", str(st.batch_size), "--base-channels", str(st.base_channels),
            "--seed", str(seed), "--device", st.device, "--resume" if resume else "--overwrite"]


def prior_cmd(st: Settings, spec: Spec, seed: int, resume: bool) -> list[str]:
    cmd = [*mvq_command(), "train", "prior", str(run_dir(st, spec, seed)), "--data", st.train_data, *PRIOR_SIZE,
           "--steps", str(st.prior_steps), "--batch-size", str(prior_batch(spec.tokens)), "--seed", str(seed),
           "--device", st.device]
    return cmd + (["--resume"] if resume else [])


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


def tokenizer_done(d: Path) -> bool:
    cfg = read_json(d / "config.json")
    return bool(cfg and cfg.get("metrics") and (d / "tokenizer.safetensors").is_file())


def prior_done(d: Path) -> bool:
    cfg = read_json(d / "config.json")
    return bool(cfg and cfg.get("prior_training") and (d / "prior.safetensors").is_file())


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
    cfg = read_json(d / "config.json") or {}
    bad = []

    def want(what: str, have, wanted) -> None:
        if have is not None and have != wanted:
            bad.append(f"{what} {have} (asked: {wanted})")

    if tokenizer_done(d):
        tr, tok = cfg.get("training") or {}, cfg.get("tokenizer") or {}
        q = tok.get("quantizer") or {}
        want("steps", tr.get("steps"), st.steps)
        want("batch size", tr.get("batch_size"), st.batch_size)
        want("seed", tr.get("seed"), seed)
        want("data", tr.get("data"), st.train_data)
        want("base channels", tok.get("base_channels"), st.base_channels)
        want("image size", tok.get("image_size"), st.image_size)
        want("channels", tok.get("channels"), st.channels)
        want("tokens", tok.get("tokens"), spec.tokens)
        want("layout", tok.get("layout"), spec.layout)
        q = tokenizer_config_of(cfg).quantizer  # typed, with older formats read as what they meant
        default = QuantizerConfig()
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
    if prior_done(d):
        pt, pr = cfg.get("prior_training") or {}, cfg.get("prior") or {}
        want("prior steps", pt.get("steps"), st.prior_steps)
        want("prior batch size", pt.get("batch_size"), prior_batch(spec.tokens))
        want("prior seed", pt.get("seed"), seed)
        for key, value in PRIOR_DEFAULTS.items():
            want(f"prior {key}", pr.get(key), value)
    return bad


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
        ev = (read_json(d / "config.json") or {}).get("eval")
        if ev:
            (d / "eval.json").write_text(json.dumps(ev, indent=1) + "\n")
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


# ---------------------------------------------------------------- results


def collect(st: Settings, runs: list[tuple[Spec, int]]) -> tuple[list[dict], list[str]]:
    bench = read_json(st.out / "benchmark.json") or {}
    timing = {str(Path(r["model"])): r for r in bench.get("rows", [])}
    rows, missing = [], []
    for spec, seed in runs:
        d = run_dir(st, spec, seed)
        ev = read_json(d / "eval.json")
        if not ev or not eval_done(st, d):
            missing.append(f"{spec.name}-s{seed}")
            continue
        t = timing.get(str(d), {})
        rows.append({
            "name": spec.name, "run": f"{spec.name}-s{seed}", "quantizer": spec.quantizer, "K": spec.K, "g": spec.g,
            "levels": list(spec.levels) if spec.levels else None, "layout": spec.layout, "T": spec.tokens,
            "vocab": spec.vocab, "seed": seed, "group": spec.group,
            "mse": ev.get("mse"), "psnr": ev.get("psnr"), "ssim": ev.get("ssim"), "recon_fd": ev.get("recon_fd"),
            "generation_fd": ev.get("generation_fd"), "tokens_used": ev.get("tokens_used"),
            "perplexity": ev.get("perplexity"), "eval_images": ev.get("images"), "feature_net": ev.get("feature_net"),
            "fd_floor": ev.get("fd_train_vs_test"),
            "ms_per_image_b64": t.get("ms_per_image_b64"), "ms_per_image_b1": t.get("ms_per_image_b1"),
            "folder": str(d),
        })
    return rows, missing


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def fmt(values: list[float | None], spec: str) -> str:
    m, s = mean_std(values)
    if m is None:
        return "-"
    return format(m, spec) + ("" if s is None else " ± " + format(s, spec))


def by_name(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["name"], []).append(r)
    return out


def rel_change(m_rows: list[dict], b_rows: list[dict], key: str) -> str:
    """Relative change of MVQ against the baseline in % (of the means; ± the std of the per-seed changes)."""
    m, _ = mean_std([r[key] for r in m_rows])
    b, _ = mean_std([r[key] for r in b_rows])
    if m is None or b is None or b == 0:
        return "-"
    text = f"{100 * (m - b) / b:+.1f}%"
    base = {r["seed"]: r[key] for r in b_rows if r[key]}
    paired = [100 * (r[key] - base[r["seed"]]) / base[r["seed"]] for r in m_rows
              if r[key] is not None and r["seed"] in base]
    if len(paired) > 1:
        text += f" (per seed {statistics.fmean(paired):+.1f} ± {statistics.stdev(paired):.1f}%)"
    return text


def write_markdown(path: Path, rows: list[dict], specs: list[Spec], settings: dict, missing: list[str]) -> None:
    groups = by_name(rows)
    lines = [f"# VQ vs FSQ vs MVQ on {settings['data']}", ""]
    lines.append(f"Tokenizers: {settings['steps']} steps, batch {settings['batch_size']}, base channels "
                 f"{settings['base_channels']}; priors: 4 layers, 4 heads, width 128, {settings['prior_steps']} steps; "
                 f"seeds {settings['seeds']}; eval on {settings['eval_images'] or '-'} images of "
                 f"{settings['eval_data']} (FD in the features of `{settings['feature_nets'] or '-'}`, real-vs-real floor "
                 f"{settings['fd_floor'] or '-'}); "
                 f"sampling time on {settings.get('bench_device') or '-'} "
                 f"({settings.get('bench_threads') or '-'} threads). Made by `{settings['command']}`.")
    if settings["data"] != FASHION and "fd-fmnist-classifier" in (settings["feature_nets"] or ""):
        lines += ["", "Note: FD is measured with a Fashion-MNIST classifier (images turned to grey 28x28); its FD "
                  "values compare the models with each other but are not a calibrated distance for this data. Pass "
                  "--feature-net for a classifier trained on this data."]
    lines += ["", "## All runs (mean ± std over seeds)", "",
              "| run | quantizer | T | vocabulary | seeds | test MSE | PSNR dB | SSIM | recon FD | gen FD | tokens used "
              "| ms/img b=64 | ms/img b=1 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for spec in specs:
        rs = groups.get(spec.name)
        if not rs:
            continue
        col = lambda k: [r[k] for r in rs]  # noqa: E731
        lines.append(f"| {spec.name} | {spec.describe} | {spec.tokens}{' (grid)' if spec.layout == 'grid' else ''} | "
                     f"{spec.vocab} | {len(rs)} | {fmt(col('mse'), '.4f')} | {fmt(col('psnr'), '.2f')} | "
                     f"{fmt(col('ssim'), '.3f')} | {fmt(col('recon_fd'), '.3g')} | {fmt(col('generation_fd'), '.3g')} | "
                     f"{fmt(col('tokens_used'), '.0f')}/{spec.vocab} | {fmt(col('ms_per_image_b64'), '.3g')} | "
                     f"{fmt(col('ms_per_image_b1'), '.3g')} |")
    for axis, title in (("same K", "MVQ vs VQ with the same number of code vectors K (the paper's axis)"),
                        ("same vocabulary", "MVQ vs VQ and FSQ with the same token vocabulary K*M (the fair axis for the prior)")):
        lines += ["", f"## {title}", "", "Change = (MVQ - baseline) / baseline: negative is better for MVQ (FD, MSE).", "",
                  "| T | MVQ | baseline | vocab MVQ / baseline | gen FD MVQ | gen FD baseline | gen FD change "
                  "| recon FD MVQ | recon FD baseline | recon FD change | MSE change |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        pairs = [(m, b) for ax, m, b in comparisons(specs) if ax == axis and m.name in groups and b.name in groups]
        if not pairs:
            lines.append("| (no pair with both runs complete yet) |  |  |  |  |  |  |  |  |  |  |")
        for m, b in pairs:
            mr, br = groups[m.name], groups[b.name]
            lines.append(f"| {m.tokens} | {m.describe} | {b.describe} | {m.vocab} / {b.vocab} | "
                         f"{fmt([r['generation_fd'] for r in mr], '.3g')} | {fmt([r['generation_fd'] for r in br], '.3g')} | "
                         f"{rel_change(mr, br, 'generation_fd')} | {fmt([r['recon_fd'] for r in mr], '.3g')} | "
                         f"{fmt([r['recon_fd'] for r in br], '.3g')} | {rel_change(mr, br, 'recon_fd')} | "
                         f"{rel_change(mr, br, 'mse')} |")
    long = [s for s in specs if s.group == "long" and s.name in groups]
    short = [s for s in specs if s.quantizer in MASKED and s.group != "ablation" and s.name in groups]
    if long and short:
        lines += ["", "## Sampling time: MVQ at T tokens vs the long-sequence VQ baselines (batch 64)", "",
                  "| MVQ | T | gen FD | ms/img | baseline | T' | gen FD | ms/img | speed-up | baseline at least as good |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for m in short:
            for b in long:
                mr, br = groups[m.name], groups[b.name]
                mt, _ = mean_std([r["ms_per_image_b64"] for r in mr])
                bt, _ = mean_std([r["ms_per_image_b64"] for r in br])
                mf, _ = mean_std([r["generation_fd"] for r in mr])
                bf, _ = mean_std([r["generation_fd"] for r in br])
                speed = f"{bt / mt:.1f}x" if mt and bt else "-"
                good = "-" if mf is None or bf is None else ("yes" if bf <= mf else "no")
                lines.append(f"| {m.describe} | {m.tokens} | {fmt([r['generation_fd'] for r in mr], '.3g')} | "
                             f"{fmt([r['ms_per_image_b64'] for r in mr], '.3g')} | {b.describe} | {b.tokens} | "
                             f"{fmt([r['generation_fd'] for r in br], '.3g')} | "
                             f"{fmt([r['ms_per_image_b64'] for r in br], '.3g')} | {speed} | {good} |")
    means = {name: {k: mean_std([r[k] for r in rs])[0] for k in ("generation_fd", "ms_per_image_b64", "ms_per_image_b1")}
             for name, rs in groups.items()}
    if long:
        lines += ["", "## Speed-up at equal quality (token sampling, batch 64 and 1)", "",
                  "The fastest run whose generation FD is at most the baseline's; speed-up = baseline time / its time.", "",
                  "| baseline | T | gen FD | fastest run as good | T | gen FD | speed-up b=64 | speed-up b=1 |",
                  "|---|---|---|---|---|---|---|---|"]
        by_spec = {s.name: s for s in specs}
        for b in long:
            mb = means[b.name]
            rivals = [n for n, m in means.items() if n != b.name and by_spec.get(n) and by_spec[n].tokens < b.tokens
                      and m["generation_fd"] is not None and mb["generation_fd"] is not None
                      and m["generation_fd"] <= mb["generation_fd"] and m["ms_per_image_b64"]]
            best = min(rivals, key=lambda n: means[n]["ms_per_image_b64"], default=None)
            if best is None:
                lines.append(f"| {b.describe} | {b.tokens} | {fmt([mb['generation_fd']], '.3g')} | none | - | - | - | - |")
                continue
            m = means[best]
            up64 = f"{mb['ms_per_image_b64'] / m['ms_per_image_b64']:.1f}x" if mb["ms_per_image_b64"] else "-"
            up1 = f"{mb['ms_per_image_b1'] / m['ms_per_image_b1']:.1f}x" if mb["ms_per_image_b1"] and m["ms_per_image_b1"] else "-"
            lines.append(f"| {b.describe} | {b.tokens} | {fmt([mb['generation_fd']], '.3g')} | {by_spec[best].describe} "
                         f"| {by_spec[best].tokens} | {fmt([m['generation_fd']], '.3g')} | {up64} | {up1} |")
    if missing:
        lines += ["", f"Not complete (no eval yet, left out above): {', '.join(missing)}."]
    lines += ["", "Plots: fd_vs_tokens.png, fd_vs_time.png. Rows: results.json.", ""]
    path.write_text("\n".join(lines))


# ---------------------------------------------------------------- plots (Pillow only)

COLOURS = {"vq": (31, 119, 180), "fsq": (44, 160, 44), "mvq": (214, 39, 40), "mvq-joint": (255, 127, 14)}
LABELS = {"vq": "VQ", "fsq": "FSQ", "mvq": "MVQ sampled masks", "mvq-joint": "MVQ joint tokens"}


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable with FreeType (Pillow >= 10.1)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def draw_marker(d, x: float, y: float, quantizer: str, r: int = 6) -> None:
    c = COLOURS.get(quantizer, (90, 90, 90))
    if quantizer == "fsq":
        d.rectangle([x - r, y - r, x + r, y + r], fill=c, outline=(0, 0, 0))
    elif quantizer in MASKED:
        d.polygon([(x, y - r - 1), (x - r - 1, y + r), (x + r + 1, y + r)], fill=c, outline=(0, 0, 0))
    else:
        d.ellipse([x - r, y - r, x + r, y + r], fill=c, outline=(0, 0, 0))


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(k * mag for k in (1, 2, 2.5, 5, 10) if k * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], first
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 12))
        v += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks of a log axis (only powers of ten when there are many; 1..9 or linear ones when few)."""
    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    for mults in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [float(f"{k * 10.0**e:.12g}") for e in decades for k in mults if lo <= k * 10.0**e <= hi]
        if len(ticks) > 8:
            ticks = [t for t in ticks if f"{t:e}".startswith("1.")]
        if len(ticks) >= 3:
            return ticks
    return [t for t in nice_ticks(lo, hi, 4) if t > 0]


def tick_label(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def scatter_png(path: Path, points: list[dict], x_label: str, y_label: str, title: str, log_x: bool = False,
                x_ticks: list[float] | None = None, size: tuple[int, int] = (900, 600)) -> None:
    """A scatter plot: points are dicts with quantizer, x, y, yerr (or None) and label; one marker per quantizer."""
    from PIL import Image, ImageDraw

    w, h = size
    left, right, top, bottom = 90, 30, 50, 70
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    font, small, big = _font(14), _font(11), _font(16)
    d.text((w / 2, 12), title, fill=(0, 0, 0), font=big, anchor="mt")
    x0, y0, x1, y1 = left, top, w - right, h - bottom
    pts = [p for p in points if p.get("x") is not None and p.get("y") is not None and (not log_x or p["x"] > 0)]
    if not pts:
        d.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
        d.text(((x0 + x1) / 2, (y0 + y1) / 2), "no data yet", fill=(0, 0, 0), font=font, anchor="mm")
        img.save(path, format="PNG")
        return
    tx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xs = [tx(p["x"]) for p in pts]
    ys_lo = [p["y"] - (p.get("yerr") or 0) for p in pts]
    ys_hi = [p["y"] + (p.get("yerr") or 0) for p in pts]
    xlo, xhi = min(xs), max(xs)
    if log_x and xhi - xlo < 0.5:  # at least half a decade, so close points do not sit on the frame
        mid = (xlo + xhi) / 2
        xlo, xhi = mid - 0.25, mid + 0.25
    pad = (xhi - xlo) * 0.08 or max(abs(xlo) * 0.1, 1.0)
    xlo, xhi = xlo - pad, xhi + pad
    ylo, yhi = min(ys_lo), max(ys_hi)
    ypad = (yhi - ylo) * 0.08 or max(abs(ylo) * 0.1, 1.0)
    ylo, yhi = ylo - ypad, yhi + ypad
    if min(ys_lo) >= 0 and ylo < 0:
        ylo = 0.0
    yt = nice_ticks(ylo, yhi)
    ylo, yhi = min(ylo, yt[0]), max(yhi, yt[-1])
    px = lambda v: x0 + (tx(v) - xlo) / (xhi - xlo) * (x1 - x0)  # noqa: E731
    py = lambda v: y1 - (v - ylo) / (yhi - ylo) * (y1 - y0)  # noqa: E731
    # grid and ticks
    xt = x_ticks if x_ticks is not None else (log_ticks(10**xlo, 10**xhi) if log_x else nice_ticks(xlo, xhi))
    for v in xt:
        if v <= 0 and log_x:
            continue
        X = px(v)
        if x0 <= X <= x1:
            d.line([X, y0, X, y1], fill=(228, 228, 228))
            d.line([X, y1, X, y1 + 5], fill=(0, 0, 0))
            d.text((X, y1 + 8), tick_label(v), fill=(0, 0, 0), font=font, anchor="mt")
    for v in yt:
        Y = py(v)
        if y0 - 0.5 <= Y <= y1 + 0.5:
            d.line([x0, Y, x1, Y], fill=(228, 228, 228))
            d.line([x0 - 5, Y, x0, Y], fill=(0, 0, 0))
            d.text((x0 - 8, Y), tick_label(v), fill=(0, 0, 0), font=font, anchor="rm")
    d.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
    # axis labels (the y label drawn on its own image and turned)
    d.text(((x0 + x1) / 2, h - 18), x_label, fill=(0, 0, 0), font=font, anchor="mb")
    lw = int(d.textlength(y_label, font=font)) + 8
    label = Image.new("RGBA", (lw, 22), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((lw / 2, 11), y_label, fill=(0, 0, 0, 255), font=font, anchor="mm")
    label = label.rotate(90, expand=True)
    img.paste(label, (8, int((y0 + y1) / 2 - label.height / 2)), label)
    # points: error bars, markers, labels
    for p in pts:
        X, Y = px(p["x"]) + p.get("dx", 0), py(p["y"])
        if p.get("yerr"):
            c = COLOURS.get(p["quantizer"], (90, 90, 90))
            d.line([X, py(p["y"] - p["yerr"]), X, py(p["y"] + p["yerr"])], fill=c, width=2)
        draw_marker(d, X, Y, p["quantizer"])
        if p.get("label"):
            d.text((X + 9, Y), p["label"], fill=(60, 60, 60), font=small, anchor="lm")
    # legend
    kinds = [k for k in COLOURS if any(p["quantizer"] == k for p in pts)]
    lx, ly = x1 - 90, y0 + 10
    d.rectangle([lx - 8, ly - 6, x1 - 8, ly + 22 * len(kinds) - 2], fill=(255, 255, 255), outline=(150, 150, 150))
    for i, k in enumerate(kinds):
        draw_marker(d, lx + 6, ly + 8 + 22 * i, k)
        d.text((lx + 20, ly + 8 + 22 * i), LABELS[k], fill=(0, 0, 0), font=font, anchor="lm")
    img.save(path, format="PNG")


def plot_points(rows: list[dict], specs: list[Spec], x_key: str) -> list[dict]:
    """One point per configuration: mean over seeds (error bar: std of generation FD)."""
    groups = by_name(rows)
    pts = []
    for spec in specs:
        rs = groups.get(spec.name)
        if not rs:
            continue
        y, yerr = mean_std([r["generation_fd"] for r in rs])
        x = spec.tokens if x_key == "T" else mean_std([r[x_key] for r in rs])[0]
        label = spec.short if x_key == "T" else f"T{spec.tokens}: {spec.short}"
        pts.append({"quantizer": spec.quantizer, "x": x, "y": y, "yerr": yerr, "label": label, "T": spec.tokens})
    return pts


def write_plots(out: Path, rows: list[dict], specs: list[Spec]) -> None:
    pts = plot_points(rows, specs, "T")
    by_t: dict[int, list[dict]] = {}
    for p in pts:
        by_t.setdefault(p["T"], []).append(p)
    for group in by_t.values():  # spread the configurations that share T sideways, so they do not overlap
        group.sort(key=lambda p: (p["quantizer"], p["label"]))
        for i, p in enumerate(group):
            p["dx"] = (i - (len(group) - 1) / 2) * 9
    scatter_png(out / "fd_vs_tokens.png", pts, "tokens per image T (log scale)", "generation FD (lower is better)",
                "Generation FD against sequence length", log_x=True, x_ticks=sorted({s.tokens for s in specs}))
    scatter_png(out / "fd_vs_time.png", plot_points(rows, specs, "ms_per_image_b64"),
                "prior sampling time, ms per image at batch 64 (log scale)", "generation FD (lower is better)",
                "Generation FD against sampling time", log_x=True)


# ---------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="VQ vs FSQ vs MVQ through the mvq CLI (see the module docstring).",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder")
    ap.add_argument("--steps", type=int, default=1500, help="tokenizer training steps (as scripts/train_shipped.sh)")
    ap.add_argument("--prior-steps", type=int, default=3000, help="prior training steps")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (tokenizer, prior and sampling)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these runs (names or globs, see --list)")
    ap.add_argument("--data", default=FASHION, help="fashion-mnist, or an image folder (with train/ and test/ if split)")
    ap.add_argument("--image-size", type=int, default=28, help="image side (28 for fashion-mnist)")
    ap.add_argument("--channels", type=int, default=1, help="1 (grey) or 3 (RGB)")
    ap.add_argument("--batch-size", type=int, default=128, help="tokenizer batch size, the same for every run")
    ap.add_argument("--base-channels", type=int, default=16, help="autoencoder width, the same for every run")
    ap.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N test images only (default: all)")
    ap.add_argument("--feature-net", default=None, help="FD feature net for `mvq eval` (default: its own default)")
    ap.add_argument("--device", default="auto", help="--device of every mvq command")
    ap.add_argument("--bench-repeats", type=int, default=5, help="--repeats of `mvq benchmark`")
    ap.add_argument("--no-benchmark", action="store_true", help="do not time sampling")
    ap.add_argument("--adopt", type=Path, nargs="+", default=[], metavar="FOLDER",
                    help="finished model folders (e.g. weights/*) to copy into the runs whose settings they match")
    ap.add_argument("--dry-run", action="store_true", help="print the commands (and what would be skipped), run nothing")
    ap.add_argument("--list", action="store_true", help="print the run names of the grid and exit")
    args = ap.parse_args(argv)
    if args.data == FASHION and (args.image_size, args.channels) != (28, 1):
        ap.error("fashion-mnist is 28x28 grey: --image-size 28 --channels 1")
    if args.data != FASHION and not Path(args.data).is_dir():
        ap.error(f"--data {args.data}: not fashion-mnist and not a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    specs = grid(args.image_size)
    if args.list:
        for s in specs + ablations():
            print(f"{s.name:18} {s.describe:18} T={s.tokens:<3} vocabulary {s.vocab}")
        return 0
    if args.only:
        specs += ablations()
        unknown = [p for p in args.only if not any(fnmatch.fnmatchcase(s.name, p) for s in specs)]
        if unknown:
            print(f"error: --only {' '.join(unknown)} matches no run; the runs are: "
                  f"{' '.join(s.name for s in specs)}", file=sys.stderr)
            return 2
        specs = [s for s in specs if any(fnmatch.fnmatchcase(s.name, p) for p in args.only)]
    st = Settings(out=args.out, steps=args.steps, prior_steps=args.prior_steps, seeds=args.seeds,
                  batch_size=args.batch_size, base_channels=args.base_channels, data=args.data,
                  image_size=args.image_size, channels=args.channels, eval_limit=args.eval_limit,
                  feature_net=args.feature_net, device=args.device, bench_repeats=args.bench_repeats)
    runs = [(spec, seed) for seed in st.seeds for spec in specs]  # seed-major: a whole first seed comes first

    conflicts = [f"{run_dir(st, s, seed)}: {', '.join(bad)}" for s, seed in runs if (bad := mismatches(st, s, seed))]
    if conflicts:
        print("error: these runs were completed with other settings (use another --out, or delete them):",
              *conflicts, sep="\n  ", file=sys.stderr)
        return 2

    adopt(st, runs, args.adopt, args.dry_run)
    failed = []
    for spec, seed in runs:
        if not run_one(st, spec, seed, args.dry_run):
            failed.append(f"{spec.name}-s{seed}")

    dirs = [run_dir(st, s, seed) for s, seed in runs]
    ready = [d for d in dirs if prior_done(d)] if not args.dry_run else dirs
    if not args.no_benchmark and ready:
        if not args.dry_run and benchmark_done(st, ready):
            print("# benchmark complete, skipped")
        else:
            tokens = min(read_json(d / "config.json")["tokenizer"]["tokens"] for d in ready) if not args.dry_run \
                else min(s.tokens for s in specs)
            if not run(benchmark_cmd(st, ready, tokens), args.dry_run, "sampling time of all priors, one process"):
                failed.append("benchmark")
    if args.dry_run:
        return 0

    rows, missing = collect(st, runs)
    bench = read_json(st.out / "benchmark.json") or {}
    settings = {"data": st.data, "train_data": st.train_data, "eval_data": st.eval_data, "image_size": st.image_size,
                "channels": st.channels, "steps": st.steps, "prior_steps": st.prior_steps, "seeds": st.seeds,
                "batch_size": st.batch_size, "base_channels": st.base_channels, "eval_limit": st.eval_limit,
                "eval_images": sorted({r["eval_images"] for r in rows}) or None,
                "feature_net": st.feature_net, "feature_nets": ", ".join(sorted({str(r["feature_net"]) for r in rows})),
                "fd_floor": ", ".join(sorted({f"{r['fd_floor']:.3g}" for r in rows if r["fd_floor"] is not None})),
                "device": st.device, "bench_device": bench.get("device"),
                "bench_threads": bench.get("threads"), "bench_repeats": st.bench_repeats,
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "command": "python " + shlex.join(["scripts/compare.py", *(argv if argv is not None else sys.argv[1:])])}
    if settings["eval_images"] and len(settings["eval_images"]) == 1:
        settings["eval_images"] = settings["eval_images"][0]
    st.out.mkdir(parents=True, exist_ok=True)
    (st.out / "results.json").write_text(json.dumps({"settings": settings, "rows": rows, "incomplete": missing},
                                                    indent=1) + "\n")
    write_markdown(st.out / "results.md", rows, specs, settings, missing)
    write_plots(st.out, rows, specs)
    print(f"wrote {st.out / 'results.json'} ({len(rows)} runs), {st.out / 'results.md'}, "
          f"{st.out / 'fd_vs_tokens.png'}, {st.out / 'fd_vs_time.png'}")
    if failed:
        print(f"failed: {', '.join(failed)} (re-run to retry; finished stages are kept)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue (finished stages are skipped, "
              "trainings resume from their last checkpoint)", file=sys.stderr)
        sys.exit(130)
