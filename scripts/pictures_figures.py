"""Pictures of the picture-set comparison: test pictures reconstructed by each model, and each model's samples.

    python scripts/pictures_figures.py --data /work/data/pictures64 --out results/pictures \\
        "MVQ K=16 T=2=/work/runs/pictures/runs/mvq-k16g4-t2-s0" "VQ K=16 T=2=/work/runs/pictures/runs/vq-k16-t2-s0" ...

Each MODEL is LABEL=FOLDER (or a folder). Writes OUT/reconstructions.png (a row of --n test pictures, two of
each group of the set's labels, then a row per model, each captioned with its label and the row's PSNR of the
mean MSE) and OUT/samples.png (a row of --n samples of each model's AR prior, seed 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from tokenizer_cli import Pipeline
from tokenizer_cli.files import captioned, enlarge, make_grid, psnr_text

GROUPS = ["photo", "painting", "texture", "render", "clip-art", "sprite", "icon"]  # prepare_pictures.py's labels


def test_pictures(data: Path, n: int) -> np.ndarray:
    """n test crops, spread over the groups (in GROUPS order, round robin), the same every run."""
    images, labels = np.load(data / "test" / "images.npy"), np.load(data / "test" / "labels.npy")
    rng = np.random.default_rng(0)
    pools = [list(rng.permutation(np.flatnonzero(labels == g))) for g in range(len(GROUPS))]
    picked: list[int] = []
    while len(picked) < n and any(pools):
        for pool in pools:
            if pool and len(picked) < n:
                picked.append(int(pool.pop()))
    return images[picked]


def strip(images: np.ndarray, scale: int, left: str, right: str = "") -> np.ndarray:
    """One captioned row of tiles."""
    row = make_grid(enlarge(images, scale), ncols=len(images), pad=2)
    return captioned(row, left, right)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="LABEL=FOLDER")
    ap.add_argument("--data", type=Path, default=Path("/work/data/pictures64"))
    ap.add_argument("--out", type=Path, default=Path("results/pictures"))
    ap.add_argument("--n", type=int, default=14)
    ap.add_argument("--scale", type=int, default=1)
    a = ap.parse_args()
    models = [m.rsplit("=", 1) if "=" in m else [Path(m).name, m] for m in a.models]
    originals = test_pictures(a.data, a.n)
    recon_rows, sample_rows = [strip(originals, a.scale, "test pictures")], []
    for label, folder in models:
        pipe = Pipeline.from_pretrained(folder, device="cpu")
        recon = pipe.reconstruct(originals, output="numpy")
        recon_rows.append(strip(recon, a.scale, label, psnr_text(originals, recon)))
        samples = pipe.sample(a.n, seed=0, output="numpy")
        sample_rows.append(strip(samples, a.scale, label))
        print(f"{label}: {psnr_text(originals, recon)} on these {a.n} pictures", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("reconstructions.png", recon_rows), ("samples.png", sample_rows)):
        Image.fromarray(np.concatenate(rows, axis=0)).save(a.out / name)
        print(f"wrote {a.out / name}")


if __name__ == "__main__":
    main()
