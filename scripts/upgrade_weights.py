"""Bring model folders written by older mvq up to today's format, in place, keeping each tensor's dtype.

Usage: python scripts/upgrade_weights.py FOLDER [FOLDER ...]
  - config.json: format 2 (joint-token MVQ is kind "mvq-joint", K is "num_codes")
  - prior.safetensors: the MLP's nanoGPT names (blocks.i.mlp.c_fc / c_proj instead of mlp.0 / mlp.2); a
    stored `eval` of these weights is kept, with the new files' digest (the numbers are the same)
Loading upgrades on the fly too; this makes the files say what they are.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from tokenizer_cli.config import FORMAT_VERSION
from tokenizer_cli.files import atomic_write
from tokenizer_cli.hub import read_config, weights_digest, write_config
from tokenizer_cli.models.prior import Prior


def upgrade(folder: Path) -> list[str]:
    done = []
    cfg = read_config(folder)  # older formats are read as what they meant
    digest_before = weights_digest(folder)
    if cfg.format_version < FORMAT_VERSION:
        done.append(f"config.json -> format {FORMAT_VERSION}")
    prior = folder / "prior.safetensors"
    if prior.is_file():
        state = load_file(prior)
        new = Prior.upgrade_state_dict(state)
        if list(new) != list(state):
            atomic_write(prior, lambda p: save_file(new, p))
            done.append("prior.safetensors -> c_fc / c_proj")
    if done and cfg.eval is not None and cfg.eval.weights_sha256 == digest_before:
        cfg.eval = dataclasses.replace(cfg.eval, weights_sha256=weights_digest(folder))  # same numbers: it holds
    if done:
        write_config(folder, cfg)  # today's format, and the card written from it
    return done


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for folder in map(Path, argv):
        print(f"{folder}: {', '.join(upgrade(folder)) or 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
