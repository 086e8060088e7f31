"""The before/after speed table of issue 13, old and new code measured side by side in one run.

    python scripts/speed_table.py --ref d5ec0d8 [--repeats 3] [--json results/speed.json]

Rows: tokenizer training (fp32, and new bf16 against old fp32) and prior training, images or sequences per
second at 1 and 2 threads (scripts/bench_train.py --compare, alternating old and new runs); and the wall time
of `mvq sample --n 64` against bare `python -c "import torch"`, old and new in alternation (medians).
Run it on an otherwise idle machine: every number is a median of runs that saw the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench_train.py"


def train_rows(ref: str, repeats: int, steps: int) -> list[dict]:
    rows = []
    for kind, precision, old_precision in (("tokenizer", "fp32", None), ("tokenizer", "bf16", "fp32"),
                                           ("prior", "fp32", None)):
        for threads in (1, 2):
            argv = [sys.executable, str(BENCH), kind, "--threads", str(threads), "--precision", precision,
                    "--compare", ref, "--repeats", str(repeats), "--steps", str(steps)]
            if old_precision:
                argv += ["--old-precision", old_precision]
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"{kind:9s} {r['old_precision']}->{precision} {threads} thread(s): {r['old_median']} -> "
                  f"{r['new_median']} /s ({r['speedup']}x)", flush=True)
    return rows


def startup(ref: str, repeats: int) -> dict:
    """Median wall seconds of `mvq sample --n 64` (old and new) and of bare `import torch`, in alternation."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True,
                       capture_output=True)
        try:
            def sample(code: Path) -> list[str]:  # each side's default model, from its own weights/
                return [sys.executable, "-m", "tokenizer_cli", "sample", "--n", "64", "--out", str(Path(tmp) / "s.png"),
                        "--overwrite", "--device", "cpu", "--model", str(code / "weights" / "mvq-fmnist-t2")]
            commands = {"import torch": ([sys.executable, "-c", "import torch"], ROOT),
                        "old mvq sample --n 64": (sample(tree), tree), "new mvq sample --n 64": (sample(ROOT), ROOT)}
            times: dict[str, list[float]] = {k: [] for k in commands}
            for _ in range(repeats):
                for name, (cmd, code) in commands.items():
                    env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1"}
                    t = time.perf_counter()
                    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=tmp)
                    times[name].append(time.perf_counter() - t)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    base = med["import torch"]
    print(f"import torch {base} s; mvq sample --n 64: old {med['old mvq sample --n 64']} s "
          f"({med['old mvq sample --n 64'] / base:.2f}x), new {med['new mvq sample --n 64']} s "
          f"({med['new mvq sample --n 64'] / base:.2f}x)", flush=True)
    return {"median_s": med, "runs_s": {k: [round(x, 3) for x in v] for k, v in times.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="d5ec0d8", help="the old code (git ref)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per run")
    ap.add_argument("--startup-repeats", type=int, default=10)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    result = {"ref": a.ref, "startup": startup(a.ref, a.startup_repeats), "training": train_rows(a.ref, a.repeats, a.steps)}
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
