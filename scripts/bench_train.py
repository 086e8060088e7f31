"""Training throughput (images or token sequences per second) of the tokenizer or the prior, on CPU or GPU.

    python scripts/bench_train.py tokenizer --threads 2                       # this checkout
    python scripts/bench_train.py tokenizer --threads 2 --precision bf16
    python scripts/bench_train.py prior --threads 1 --compare d5ec0d8         # old vs this, side by side
    python scripts/bench_train.py tokenizer --compare d5ec0d8 --old-precision fp32 --precision bf16

The defaults are the shipped Fashion-MNIST MVQ settings (T=2, K=16, g=4, base channels 16, batch 128) and
the shipped prior (4 layers, 4 heads, width 128, batch 256, T=2, vocabulary 240). Throughput is timed
between the end of step --warmup and the last step, through the library's own `train_tokenizer` /
`train_prior` (their `on_step` callback), so the whole loop counts: data, forward, backward, optimizer.

--compare REF checks REF out into a temporary `git worktree` and measures it and this checkout in turns
(old, new, old, new, ...), each run a fresh process, so that both see the same machine load; the report
gives the median of each and their ratio. Options REF's TrainConfig lacks (compile) count for this checkout
only. Random Fashion-MNIST-shaped data are used unless --data fashion-mnist.
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


def measure(args) -> dict:
    """One timed training run in this process, with whatever `tokenizer_cli` is first on sys.path."""
    import numpy as np
    import torch

    import tokenizer_cli
    from tokenizer_cli import train as train_mod
    from tokenizer_cli.config import PriorConfig, QuantizerConfig, TokenizerConfig

    torch.set_num_threads(args.threads)
    fields = set(train_mod.TrainConfig.__dataclass_fields__)
    extra = {"compile": args.compile} if "compile" in fields else {}
    cfg = train_mod.TrainConfig(steps=args.warmup + args.steps, batch_size=args.batch_size, checkpoint_every=0,
                                precision=args.precision, **extra)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    times: dict[int, float] = {}

    def on_step(step: int, stats: dict) -> None:
        times[step] = time.perf_counter()

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as run_dir:
        if args.kind == "tokenizer":
            from tokenizer_cli.models import Tokenizer

            import dataclasses

            old = "codebook_size" in {f.name for f in dataclasses.fields(QuantizerConfig)}  # format 1's name of K
            k = "codebook_size" if old else "num_codes"
            q = QuantizerConfig(kind=args.quantizer, dim=16, mask_bits=args.mask_bits, **{k: args.codebook_size})
            model = Tokenizer(TokenizerConfig(image_size=28, channels=1, tokens=args.tokens,
                                              base_channels=args.base_channels, quantizer=q))
            if args.data == "fashion-mnist":
                from tokenizer_cli.data import load_fashion_mnist

                images = load_fashion_mnist(split="train")[0]
            else:
                images = rng.integers(0, 256, (args.images, 28, 28), dtype=np.uint8)
            t0 = time.perf_counter()
            train_mod.train_tokenizer(model, images, cfg, Path(run_dir), device, on_step=on_step)
        else:
            from tokenizer_cli.models.prior import Prior

            model = Prior(PriorConfig(vocab_size=args.vocab, tokens=args.tokens, n_layer=args.layers,
                                      n_head=args.heads, n_embd=args.width))
            tokens = rng.integers(0, args.vocab, (args.images, args.tokens), dtype=np.int64)
            t0 = time.perf_counter()
            train_mod.train_prior(model, tokens, None, cfg, Path(run_dir), device, on_step=on_step)
    last = args.warmup + args.steps
    seconds = times[last] - times[args.warmup]
    return {"per_second": args.steps * args.batch_size / seconds, "ms_per_step": 1000 * seconds / args.steps,
            "first_steps_s": times[args.warmup] - t0, "code": str(Path(tokenizer_cli.__file__).parent.parent)}


def _run_worker(code_root: Path, argv: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv, "--worker"], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"benchmark run in {code_root} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(args, argv: list[str]) -> dict:
    """Old (REF in a temporary worktree) and new (this checkout) in alternation."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.compare],
                       check=True, capture_output=True)
        try:
            old, new = [], []
            old_argv = argv + (["--precision", args.old_precision] if args.old_precision else [])
            for _ in range(args.repeats):
                old.append(_run_worker(tree, old_argv)["per_second"])
                new.append(_run_worker(ROOT, argv)["per_second"])
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False,
                           capture_output=True)
    o, n = statistics.median(old), statistics.median(new)
    return {"old": args.compare, "old_per_second": [round(x, 1) for x in old],
            "new_per_second": [round(x, 1) for x in new], "old_precision": args.old_precision or args.precision, "old_median": round(o, 1), "new_median": round(n, 1),
            "speedup": round(n / o, 3)}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["tokenizer", "prior"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the model (this checkout only)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--batch-size", type=int, default=None, help="default 128 (tokenizer) or 256 (prior)")
    p.add_argument("--images", type=int, default=10_000, help="random training rows (unless --data fashion-mnist)")
    p.add_argument("--data", default="random", choices=["random", "fashion-mnist"])
    p.add_argument("--quantizer", default="mvq", choices=["mvq", "vq", "fsq"])
    p.add_argument("--codebook-size", type=int, default=16)
    p.add_argument("--mask-bits", type=int, default=4)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--tokens", type=int, default=2)
    p.add_argument("--vocab", type=int, default=240, help="prior vocabulary")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--compare", metavar="REF", help="measure git REF and this checkout in alternation")
    p.add_argument("--old-precision", choices=["fp32", "bf16"], help="--precision of the REF side (default: the same)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each side with --compare")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = 128 if args.kind == "tokenizer" else 256
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.compare:
        skip = {"--compare": 1, "--old-precision": 1, "--repeats": 1}
        worker_argv, i = [], 0
        while i < len(argv):  # the worker runs one measurement: drop the comparison's own options
            if argv[i] in skip:
                i += 1 + skip[argv[i]]
                continue
            worker_argv.append(argv[i])
            i += 1
        result = compare(args, worker_argv)
    else:
        result = measure(args)
    result.update({"kind": args.kind, "threads": args.threads, "precision": args.precision, "compile": args.compile,
                   "batch_size": args.batch_size, "steps": args.steps})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
