"""FSQ's codebook-size study (FSQ paper, Fig. 3) on the 7x7 token grid of Fashion-MNIST, through `mvq` commands.

Usage:
    python scripts/codebook_size.py [--out runs/codebook-size] [--steps 500] [--prior-steps 500]
                                    [--only NAME_OR_GLOB ...] [--eval-limit N] [--dry-run]
    python scripts/codebook_size.py --report [--out ...]   # only the table and plots of what is done
    python scripts/codebook_size.py --list

The rows (names as in --only), every one a 49-token grid with the same encoder/decoder (--base-channels 16),
data, --steps, batch and seed:
  fsq-2^B       FSQ with the paper's levels: [8,8], [8,6,5], [8,5,5,5], [7,5,5,5,5], [8,8,8,6,5] (2^6 ... 2^14)
  vq-2^B        today's VQ: EMA codebook, data init, dead-code restarts, K = 2^6, 2^8, 2^10, 2^12, 2^14
  vqplain-2^B   the same VQ without the restarts (--dead-threshold 0): the machinery FSQ says it does not need
  mvq-2^B       MVQ with sampled masks (g=4), K = 2^6, 2^8, 2^10 code vectors
For each, into OUT/runs/<name>/: `mvq train tokenizer`, `mvq train prior --kind maskgit` (4 layers, width 128,
--prior-steps, batch 64), `mvq eval --sampler maskgit --steps 8 --json eval.json` (codebook usage and perplexity
on the 10,000 test images, MSE, reconstruction FD, generation FD of 10,000 samples). Finished stages are skipped,
interrupted trainings resume; two copies of this script may run at once (one thread each): a row being worked
on by one is skipped by the other (a lock file beside its folder).

Writes OUT/results.md and OUT/results.json (a row per run), OUT/usage_vs_size.png and OUT/fd_vs_size.png.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from comparison.plots import scatter_png  # noqa: E402

from tokenizer_cli.data import InputError  # noqa: E402
from tokenizer_cli.files import output_claimed  # noqa: E402
from tokenizer_cli.hub import weights_digest  # noqa: E402
from comparison.runs import PRIOR_SIZE, mvq_command, read_json, read_model, run, tokenizer_done  # noqa: E402

FSQ_LEVELS = {6: (8, 8), 8: (8, 6, 5), 10: (8, 5, 5, 5), 12: (7, 5, 5, 5, 5), 14: (8, 8, 8, 6, 5)}
TOKENS, PRIOR_BATCH, EVAL_STEPS = 49, 64, 8
FAMILIES = {"fsq": "FSQ", "vq": "VQ (EMA, data init, restarts)", "vqplain": "VQ without restarts",
            "mvq": "MVQ sampled masks, g=4"}


@dataclass(frozen=True)
class Row:
    family: str  # fsq | vq | vqplain | mvq
    bits: int  # log2 of the codebook size

    @property
    def name(self) -> str:
        return f"{self.family}-2^{self.bits}"

    @property
    def vocab(self) -> int:
        return math.prod(FSQ_LEVELS[self.bits]) if self.family == "fsq" else 2**self.bits

    def quantizer_args(self) -> list[str]:
        args = ["--tokens", str(TOKENS), "--layout", "grid"]
        if self.family == "fsq":
            return ["--quantizer", "fsq", "--levels", ",".join(map(str, FSQ_LEVELS[self.bits])), *args]
        kind = "mvq" if self.family == "mvq" else "vq"
        args = ["--quantizer", kind, "--num-codes", str(2**self.bits), *args]
        if self.family == "vqplain":
            args += ["--dead-threshold", "0"]
        if self.family == "mvq":
            args += ["--mask-bits", "4"]
        return args


def rows() -> list[Row]:
    """In the order they are run, the rows that answer the most first: FSQ at every size; VQ where the paper sees
    it collapse; VQ without restarts at 2^12, 2^14 (which machinery matters); MVQ at 2^8; then the rest."""
    return ([Row("fsq", b) for b in (6, 8, 10, 12, 14)] + [Row("vq", b) for b in (10, 12, 14)]
            + [Row("vqplain", b) for b in (12, 14)] + [Row("mvq", 8)] + [Row("vq", b) for b in (8, 6)]
            + [Row("mvq", b) for b in (6, 10)] + [Row("vqplain", b) for b in (10, 8, 6)])


@dataclass
class Settings:
    out: Path
    steps: int
    prior_steps: int
    eval_limit: int | None

    def folder(self, row: Row) -> Path:
        return self.out / "runs" / row.name


def tokenizer_cmd(st: Settings, row: Row, resume: bool) -> list[str]:
    return [*mvq_command(), "train", "tokenizer", str(st.folder(row)), *row.quantizer_args(), "--data",
            "fashion-mnist", "--steps", str(st.steps), "--batch-size", "128", "--base-channels", "16", "--seed", "0",
            "--device", "cpu", "--precision", "fp32", "--resume" if resume else "--overwrite"]


def prior_cmd(st: Settings, row: Row, resume: bool) -> list[str]:
    return [*mvq_command(), "train", "prior", str(st.folder(row)), "--kind", "maskgit", "--data", "fashion-mnist",
            *PRIOR_SIZE, "--steps", str(st.prior_steps), "--batch-size", str(PRIOR_BATCH), "--seed", "0",
            "--device", "cpu", "--precision", "fp32", "--resume" if resume else "--overwrite"]


def eval_cmd(st: Settings, row: Row) -> list[str]:
    d = st.folder(row)
    cmd = [*mvq_command(), "eval", "--model", str(d), "--sampler", "maskgit", "--steps", str(EVAL_STEPS),
           "--json", str(d / "eval.json"), "--no-write", "--device", "cpu"]
    return cmd + (["--limit", str(st.eval_limit)] if st.eval_limit else [])


def prior_done(d: Path) -> bool:
    cfg = read_model(d)
    return bool(cfg and cfg.maskgit_prior_training is not None and (d / "prior-maskgit.safetensors").is_file())


def recorded_steps(d: Path) -> tuple[int | None, int | None]:
    cfg = read_model(d)
    if cfg is None:
        return None, None
    tok = cfg.training.steps if cfg.training else None
    pri = cfg.maskgit_prior_training.steps if cfg.maskgit_prior_training else None
    return tok, pri


def run_row(st: Settings, row: Row, dry: bool) -> bool:
    d = st.folder(row)
    tok_steps, prior_steps = recorded_steps(d)
    if tokenizer_done(d) and tok_steps != st.steps or prior_done(d) and prior_steps != st.prior_steps:
        print(f"# {row.name}: trained with other steps ({tok_steps}, {prior_steps}); use another --out", flush=True)
        return False
    if not tokenizer_done(d):
        resume = (d / "checkpoints" / "latest").is_file()
        if not run(tokenizer_cmd(st, row, resume), dry, f"{row.name}: train tokenizer"):
            return False
    if not prior_done(d):
        resume = (d / "checkpoints-maskgit" / "latest").is_file()
        if not run(prior_cmd(st, row, resume), dry, f"{row.name}: train MaskGIT prior"):
            return False
    ev = read_json(d / "eval.json")
    if ev and ev.get("generation_fd") is not None and ev.get("weights_sha256") == weights_digest(d) \
            and ("--limit" in ev.get("command", "")) == bool(st.eval_limit) \
            and (not st.eval_limit or ev.get("images", 0) <= st.eval_limit):
        return True
    return run(eval_cmd(st, row), dry, f"{row.name}: eval")


# ---------------------------------------------------------------- report


def collect(st: Settings) -> list[dict]:
    out = []
    for row in rows():
        d = st.folder(row)
        ev = read_json(d / "eval.json")
        cfg = read_model(d)
        if not ev and tokenizer_done(d):  # no prior or eval yet: the tokenizer's own measures of the test images
            m = cfg.metrics
            ev = {"codebook_usage": m.codebook_usage, "tokens_used": m.tokens_used, "perplexity": m.perplexity,
                  "mse": m.mse, "psnr": m.psnr, "images": m.images}
        if not ev:
            continue
        out.append({"name": row.name, "family": row.family, "bits": row.bits, "vocab": row.vocab,
                    "usage": ev.get("codebook_usage"), "tokens_used": ev.get("tokens_used"),
                    "perplexity": ev.get("perplexity"), "mse": ev.get("mse"), "psnr": ev.get("psnr"),
                    "recon_fd": ev.get("recon_fd"), "generation_fd": ev.get("generation_fd"),
                    "images": ev.get("images"), "sampler": f"maskgit, {EVAL_STEPS} steps",
                    "steps": cfg.training.steps if cfg and cfg.training else None,
                    "prior_steps": (cfg.maskgit_prior_training.steps
                                    if cfg and cfg.maskgit_prior_training else None),
                    "tokenizer_seconds": cfg.training.seconds if cfg and cfg.training else None,
                    "prior_seconds": (cfg.maskgit_prior_training.seconds
                                      if cfg and cfg.maskgit_prior_training else None)})
    return out


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def write_report(st: Settings) -> None:
    results = collect(st)
    st.out.mkdir(parents=True, exist_ok=True)
    (st.out / "results.json").write_text(json.dumps({"rows": results}, indent=1) + "\n")
    steps = sorted({(r["steps"], r["prior_steps"]) for r in results if r["prior_steps"] is not None}, key=str)
    trained = "; ".join(f"{a} tokenizer steps, MaskGIT prior {b} steps" for a, b in steps) or "no prior yet"
    lines = [f"# Codebook size on the 7x7 grid of Fashion-MNIST ({trained}; sampled in {EVAL_STEPS} steps)", "",
             "Usage and perplexity of the tokens of the test images; generation FD of as many MaskGIT samples.", "",
             "| run | quantizer | codebook | used | usage | perplexity | MSE | PSNR dB | recon FD | gen FD | images |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (list(FAMILIES).index(r["family"]), r["bits"])):
        lines.append(f"| {r['name']} | {FAMILIES[r['family']]} | {r['vocab']:,} | {fmt(r['tokens_used'], ',')} | "
                     f"{fmt(r['usage'], '.1%')} | {fmt(r['perplexity'], ',.0f')} | {fmt(r['mse'], '.4f')} | "
                     f"{fmt(r['psnr'], '.2f')} | {fmt(r['recon_fd'], '.1f')} | {fmt(r['generation_fd'], '.1f')} | "
                     f"{fmt(r['images'], ',')} |")
    (st.out / "results.md").write_text("\n".join(lines) + "\n")
    for key, title, path in (("usage", "codebook usage on the test images", "usage_vs_size.png"),
                             ("generation_fd", f"generation FD (MaskGIT, {EVAL_STEPS} steps)", "fd_vs_size.png"),
                             ("recon_fd", "reconstruction FD", "recon_fd_vs_size.png")):
        points = [{"quantizer": r["family"], "x": r["vocab"], "y": r[key], "label": ""} for r in results]
        scatter_png(st.out / path, points, "codebook size", key.replace("_", " "), title, log_x=True)
    print(f"wrote {st.out / 'results.md'}, results.json and the plots")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/codebook-size"))
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--prior-steps", type=int, default=500)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--tokenizers-only", action="store_true",
                    help="train only the tokenizers of the rows chosen (their usage, perplexity and MSE on the test "
                         "images come with them), without taking the rows' locks: give each copy its own --only")
    a = ap.parse_args(argv)
    st = Settings(a.out, a.steps, a.prior_steps, a.eval_limit)
    chosen = [r for r in rows() if not a.only or any(fnmatch.fnmatch(r.name, p) for p in a.only)]
    if a.list:
        print("\n".join(f"{r.name}  ({r.vocab:,} codes)" for r in chosen))
        return 0
    if a.tokenizers_only and not a.report:
        for row in chosen:
            d = st.folder(row)
            if not tokenizer_done(d):
                run(tokenizer_cmd(st, row, (d / "checkpoints" / "latest").is_file()), a.dry_run,
                    f"{row.name}: train tokenizer")
    elif not a.report:
        failed = []
        for row in chosen:
            if a.dry_run:
                run_row(st, row, True)
                continue
            try:  # the row's lock: `.NAME.lock` beside its folder (the lock `mvq encode` takes on its output)
                with output_claimed(st.folder(row), "copy of this script"):
                    if not run_row(st, row, False):
                        failed.append(row.name)
            except InputError:
                print(f"# {row.name}: another copy of this script is on it, skipped", flush=True)
        if failed:
            print(f"# failed: {', '.join(failed)}")
    write_report(st)
    return 0


if __name__ == "__main__":
    sys.exit(main())
