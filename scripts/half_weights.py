"""Store a model folder's weights in float16: half the download and the disk, for shipped models.

Usage: python scripts/half_weights.py FOLDER [FOLDER ...]
Rewrites tokenizer.safetensors, prior.safetensors and prior-maskgit.safetensors (those present) in place
(atomically). Floating tensors become
float16, except any whose values do not fit float16 (|x| > 60,000: kept in float32); integer tensors are
untouched. mvq loads them into float32 models as usual (load_state_dict casts), so nothing else changes.
Run `mvq eval --model FOLDER` afterwards: the card's numbers must be those of the stored weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tokenizer_cli.files import atomic_write

FP16_SAFE = 60_000.0


def halve(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        fits = v.is_floating_point() and (v.numel() == 0 or v.abs().max().item() < FP16_SAFE)
        out[k] = v.to(torch.float16).contiguous() if fits else v
    return out


def main(folders: list[str]) -> int:
    if not folders:
        print(__doc__, file=sys.stderr)
        return 2
    for folder in map(Path, folders):
        for name in ("tokenizer.safetensors", "prior.safetensors", "prior-maskgit.safetensors"):
            path = folder / name
            if not path.is_file():
                continue
            before = path.stat().st_size
            state = halve(load_file(path))
            atomic_write(path, lambda p, s=state: save_file(s, p))
            print(f"{path}: {before / 2**20:.1f} MiB -> {path.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
