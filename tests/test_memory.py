"""Peak memory of `mvq sample` does not grow with the number of images (measured in subprocesses)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PEAK_RSS = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"  # KiB on Linux
)


def peak_rss_kib(*cmd: str) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, *cmd], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@pytest.mark.slow
def test_sample_streams_images_so_peak_memory_does_not_grow_with_n(model_with_prior, tmp_path):
    def run(n: int) -> int:
        return peak_rss_kib(sys.executable, "-m", "tokenizer_cli", "sample", "--model", str(model_with_prior),
                           "--n", str(n), "--out", str(tmp_path / f"s{n}.png"), "--batch-size", "500",
                           "--device", "cpu", "--tokens-out", str(tmp_path / f"s{n}.npy"))

    small, large = run(1_000), run(300_000)
    print(f"peak RSS: n=1,000 {small} KiB, n=300,000 {large} KiB")
    # Holding 300,000 decoded images would take 941 MB as float32 and 235 MB as uint8 on top of what sampling
    # keeps per row: measured 33 MB at n=300,000 (the manifest's 300,000 source labels and its JSON text;
    # 91-96 MB while the manifest was written by json's indented encoder). The bound catches the images, not
    # allocator noise.
    assert large - small < 120 * 1024, f"peak RSS grew from {small} KiB to {large} KiB"
