"""CPU time of the MaskGIT prior at a large vocabulary: a training step, and sampling (the numbers behind
CHANGELOG's MaskGIT speed-up). One thread; process time, so other jobs on the machine count less.

    OMP_NUM_THREADS=1 python scripts/profile_maskgit.py [--vocab 15360] [--samples 500] [--profile]

Before/after a change, side by side: check the older commit out beside this one (`git worktree add /tmp/old REV`)
and run this file alternately under each (`PYTHONPATH=/tmp/old python scripts/profile_maskgit.py`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # the package `comparison` sits beside this file
    sys.path.insert(0, HERE)

from comparison.timing import cpu_seconds_per_step  # noqa: E402
from tokenizer_cli.config import MaskGITConfig  # noqa: E402
from tokenizer_cli.models import MaskGITPrior  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=15360)
    ap.add_argument("--tokens", type=int, default=49)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--profile", action="store_true", help="print torch.profiler's table of the sampling")
    a = ap.parse_args()
    torch.manual_seed(0)
    prior = MaskGITPrior(MaskGITConfig(vocab_size=a.vocab, tokens=a.tokens, n_layer=4, n_head=4, n_embd=128))
    tokens = torch.randint(0, a.vocab, (64, a.tokens))
    train = cpu_seconds_per_step(lambda: prior.loss(tokens), torch.optim.AdamW(prior.parameters(), lr=1e-3))
    prior.eval()
    prior.generate(50, steps=a.steps, seed=0)
    t = time.process_time()
    if a.profile:
        with torch.profiler.profile() as prof:
            prior.generate(a.samples, steps=a.steps, seed=0, batch_size=1000)
    else:
        prior.generate(a.samples, steps=a.steps, seed=0, batch_size=1000)
    sample = time.process_time() - t
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=__import__("tokenizer_cli").__path__[0]).stdout.strip()
    print(json.dumps({"commit": rev, "vocab": a.vocab, "tokens": a.tokens, "train_step_cpu_s": round(train, 3),
                      f"sample_{a.samples}_cpu_s": round(sample, 2), "steps": a.steps,
                      "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}))
    if a.profile:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
