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
import os
import shlex
import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # the package `comparison` sits beside this file (also when it is loaded by path)
    sys.path.insert(0, HERE)

from comparison.plan import (FAIR_FSQ, FASHION, MASKED, Spec, ablations, comparisons, grid,  # noqa: E402,F401
                             grid_tokens)
from comparison.plots import (COLOURS, LABELS, draw_marker, log_ticks, nice_ticks, plot_points,  # noqa: E402,F401
                              scatter_png, tick_label, write_plots)
from comparison.report import by_name, collect, fmt, mean_std, rel_change, write_markdown  # noqa: E402,F401
from comparison.runs import (PRIOR_DEFAULTS, PRIOR_SIZE, Settings, adopt, benchmark_cmd,  # noqa: E402,F401
                             benchmark_done, eval_cmd, eval_done, mismatches, mvq_command, prior_batch, prior_cmd,
                             prior_done, read_json, read_model, run, run_dir, run_one, show, tokenizer_cmd, tokenizer_done,
                             weights_digest)


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
    ap.add_argument("--res-blocks", type=int, default=1,
                    help="residual blocks at each resolution of the autoencoder, the same for every run")
    ap.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N test images only (default: all)")
    ap.add_argument("--feature-net", default=None, help="FD feature net for `mvq eval` (default: its own default)")
    ap.add_argument("--device", default="auto", help="--device of every mvq command")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                    help="--precision of every training (default: mvq's auto, which differs between machines: "
                         "pin it where rows may be trained on several)")
    ap.add_argument("--bench-repeats", type=int, default=5, help="--repeats of `mvq benchmark`")
    ap.add_argument("--no-benchmark", action="store_true", help="do not time sampling")
    ap.add_argument("--report-only", action="store_true",
                    help="train and evaluate nothing: time and report the runs finished so far (others are listed "
                         "as missing)")
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
        list_runs(specs + ablations())
        return 0
    if args.only:
        specs = select(specs + ablations(), args.only)
        if specs is None:
            return 2
    st = settings_of(args)
    runs = [(spec, seed) for seed in st.seeds for spec in specs]  # seed-major: a whole first seed comes first
    if not check_settings(st, runs):
        return 2

    adopt(st, runs, args.adopt, args.dry_run)
    failed = [] if args.report_only else [f"{spec.name}-s{seed}" for spec, seed in runs
                                          if not run_one(st, spec, seed, args.dry_run)]
    if not args.no_benchmark and not benchmark(st, specs, runs, args.dry_run):
        failed.append("benchmark")
    if args.dry_run:
        return 0

    write_results(st, specs, runs, argv)
    if failed:
        print(f"failed: {', '.join(failed)} (re-run to retry; finished stages are kept)", file=sys.stderr)
        return 1
    return 0


def list_runs(specs: list[Spec]) -> None:
    for s in specs:
        print(f"{s.name:18} {s.describe:18} T={s.tokens:<3} vocabulary {s.vocab}")


def select(specs: list[Spec], only: list[str]) -> list[Spec] | None:
    """The specs named by --only (names or globs); None, with an error printed, when a pattern matches none."""
    unknown = [p for p in only if not any(fnmatch.fnmatchcase(s.name, p) for s in specs)]
    if unknown:
        print(f"error: --only {' '.join(unknown)} matches no run; the runs are: "
              f"{' '.join(s.name for s in specs)}", file=sys.stderr)
        return None
    return [s for s in specs if any(fnmatch.fnmatchcase(s.name, p) for p in only)]


def settings_of(args: argparse.Namespace) -> Settings:
    return Settings(out=args.out, steps=args.steps, prior_steps=args.prior_steps, seeds=args.seeds,
                    batch_size=args.batch_size, base_channels=args.base_channels, data=args.data,
                    image_size=args.image_size, channels=args.channels, eval_limit=args.eval_limit,
                    feature_net=args.feature_net, device=args.device, bench_repeats=args.bench_repeats,
                    precision=args.precision, res_blocks=args.res_blocks)


def check_settings(st: Settings, runs: list[tuple[Spec, int]]) -> bool:
    """False, with the runs printed, when some were completed with other settings than these."""
    conflicts = [f"{run_dir(st, s, seed)}: {', '.join(bad)}" for s, seed in runs if (bad := mismatches(st, s, seed))]
    if conflicts:
        print("error: these runs were completed with other settings (use another --out, or delete them):",
              *conflicts, sep="\n  ", file=sys.stderr)
        return False
    return True


def benchmark(st: Settings, specs: list[Spec], runs: list[tuple[Spec, int]], dry: bool) -> bool:
    """Times sampling of every run with a prior in one `mvq benchmark` (unless done already); False when it failed."""
    dirs = [run_dir(st, s, seed) for s, seed in runs]
    ready = [d for d in dirs if prior_done(d)] if not dry else dirs
    if not ready:
        return True
    if not dry and benchmark_done(st, ready):
        print("# benchmark complete, skipped")
        return True
    tokens = min(read_model(d).tokenizer.tokens for d in ready) if not dry \
        else min(s.tokens for s in specs)
    return run(benchmark_cmd(st, ready, tokens), dry, "sampling time of all priors, one process")


def write_results(st: Settings, specs: list[Spec], runs: list[tuple[Spec, int]], argv: list[str] | None) -> None:
    """OUT/results.json, OUT/results.md and the plots, from the runs finished so far."""
    rows, missing = collect(st, runs)
    settings = report_settings(st, rows, argv)
    st.out.mkdir(parents=True, exist_ok=True)
    (st.out / "results.json").write_text(json.dumps({"settings": settings, "rows": rows, "incomplete": missing},
                                                    indent=1) + "\n")
    write_markdown(st.out / "results.md", rows, specs, settings, missing)
    write_plots(st.out, rows, specs)
    print(f"wrote {st.out / 'results.json'} ({len(rows)} runs), {st.out / 'results.md'}, "
          f"{st.out / 'fd_vs_tokens.png'}, {st.out / 'fd_vs_time.png'}")


def report_settings(st: Settings, rows: list[dict], argv: list[str] | None) -> dict:
    """The settings of results.json and of the paragraph of results.md."""
    bench = read_json(st.out / "benchmark.json") or {}
    settings = {"data": st.data, "train_data": st.train_data, "eval_data": st.eval_data, "image_size": st.image_size,
                "channels": st.channels, "steps": st.steps, "prior_steps": st.prior_steps, "seeds": st.seeds,
                "batch_size": st.batch_size, "base_channels": st.base_channels,
                "res_blocks": st.res_blocks, "eval_limit": st.eval_limit,
                "eval_images": sorted({r["eval_images"] for r in rows}) or None,
                "feature_net": st.feature_net, "feature_nets": ", ".join(sorted({str(r["feature_net"]) for r in rows})),
                "fd_floor": ", ".join(sorted({f"{r['fd_floor']:.3g}" for r in rows if r["fd_floor"] is not None})),
                "device": st.device, "bench_device": bench.get("device"),
                "bench_threads": bench.get("threads"), "bench_repeats": st.bench_repeats,
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "command": "python " + shlex.join(["scripts/compare.py", *(argv if argv is not None else sys.argv[1:])])}
    if settings["eval_images"] and len(settings["eval_images"]) == 1:
        settings["eval_images"] = settings["eval_images"][0]
    return settings


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue (finished stages are skipped, "
              "trainings resume from their last checkpoint)", file=sys.stderr)
        sys.exit(130)
