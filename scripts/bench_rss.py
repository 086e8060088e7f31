"""Peak memory of `mvq encode` over a large folder: writes N real images (Fashion-MNIST rows,
repeated), encodes them in a child process, and reports its peak RSS.

Usage: python scripts/bench_rss.py [--n 100000] [--workers 2] [--dir /tmp/mvq-rss]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

from tokenizer_cli.data import load_fashion_mnist
from tokenizer_cli.files import save_png


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dir", default="/tmp/mvq-rss")
    a = p.parse_args()
    folder = Path(a.dir) / "images"
    images = load_fashion_mnist(split="test")[0]
    for i in range(a.n):  # 1,000 files a subfolder, as large collections are usually kept
        path = folder / f"{i // 1000:03d}" / f"{i:06d}.png"
        if not path.exists():
            save_png(images[i % len(images)], path)
    out = Path(a.dir) / "tokens.npy"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tokenizer_cli", "encode", str(folder), str(out), "--overwrite",
                    "--workers", str(a.workers), "--device", "cpu"], check=True, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # largest child: encode or a worker
    print(f"{a.n} images, {a.workers} workers: {seconds:.0f} s ({a.n / seconds:.0f} images/s), "
          f"peak RSS of the largest process {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
