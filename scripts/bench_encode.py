"""Encode throughput: the whole `mvq encode` pipeline vs the model's bare forward pass.

Usage: python scripts/bench_encode.py [--model mvq-fmnist-t2] [--batch-size 256] [--workers 0]
Input: the 10,000 Fashion-MNIST test images, as PNG files written to a temp folder (a real
folder of images, as users have) and as the IDX file. Same process, same threads, one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from typer.testing import CliRunner

from tokenizer_cli.cli.app import app
from tokenizer_cli.data import FASHION_MNIST_ROOT, load_fashion_mnist
from tokenizer_cli.files import save_png
from tokenizer_cli.images import to_float
from tokenizer_cli.pipeline import load_pipeline


def timed_cli(args: list[str]) -> float:
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, args)
    if res.exit_code != 0:
        raise SystemExit(res.output)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mvq-fmnist-t2")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=0)
    a = p.parse_args()
    images, _ = load_fashion_mnist(split="test")
    n = len(images)
    pipe = load_pipeline(a.model)
    x = to_float(images)
    pipe.tokenizer.encode(x[: a.batch_size])  # warm-up
    t0 = time.perf_counter()
    for s in range(0, n, a.batch_size):
        pipe.tokenizer.encode(x[s : s + a.batch_size])
    bare = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pngs"
        for i, img in enumerate(images):
            save_png(img, folder / f"{i:05d}.png")
        common = ["--model", a.model, "--batch-size", str(a.batch_size), "--workers", str(a.workers), "--device", "cpu"]
        t_png = timed_cli(["encode", str(folder), f"{tmp}/a.npy", *common])
        t_idx = timed_cli(["encode", f"{FASHION_MNIST_ROOT}/t10k-images-idx3-ubyte.gz", f"{tmp}/b.npy", *common])

    print(f"threads {torch.get_num_threads()}, batch {a.batch_size}, workers {a.workers}, {n} images, model {a.model}")
    print(f"bare tokenizer.encode:       {n / bare:8.0f} images/s")
    for name, t in (("mvq encode (PNG folder)", t_png), ("mvq encode (IDX file)", t_idx)):
        print(f"{name + ':':28s} {n / t:8.0f} images/s  (overhead beyond the forward pass: {1 - bare / t:.0%} of wall time)")


if __name__ == "__main__":
    main()
