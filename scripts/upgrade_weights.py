"""Bring model folders written by older mvq up to today's format, in place, keeping each tensor's dtype.

Usage: python scripts/upgrade_weights.py FOLDER [FOLDER ...]
  - config.json: format 2 (joint-token MVQ is kind "mvq-joint", K is "num_codes")
  - prior.safetensors: the MLP's nanoGPT names (blocks.i.mlp.c_fc / c_proj instead of mlp.0 / mlp.2); a
    stored `eval` of these weights is kept, with the new files' digest (the numbers are the same)
Loading upgrades on the fly too; this makes the files say what they are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from tokenizer_cli.cards import model_card
from tokenizer_cli.config import FORMAT_VERSION, to_dict, tokenizer_config_of
from tokenizer_cli.data import atomic_write
from tokenizer_cli.hub import read_config, weights_digest
from tokenizer_cli.models.prior import Prior


def upgrade(folder: Path) -> list[str]:
    done = []
    cfg = read_config(folder)
    digest_before = weights_digest(folder)
    if cfg.get("mvq_format", 1) < FORMAT_VERSION:
        cfg["tokenizer"] = to_dict(tokenizer_config_of(cfg))
        cfg["mvq_format"] = FORMAT_VERSION
        atomic_write(folder / "config.json", lambda p: Path(p).write_text(json.dumps(cfg, indent=2) + "\n"))
        atomic_write(folder / "README.md", lambda p: Path(p).write_text(model_card(cfg, folder.name)))
        done.append(f"config.json -> format {FORMAT_VERSION}")
    prior = folder / "prior.safetensors"
    if prior.is_file():
        state = load_file(prior)
        new = Prior.upgrade_state_dict(state)
        if list(new) != list(state):
            atomic_write(prior, lambda p: save_file(new, p))
            done.append("prior.safetensors -> c_fc / c_proj")
    ev = cfg.get("eval") or {}
    if done and ev.get("weights_sha256") == digest_before:  # renamed tensors, the same numbers: the eval holds
        cfg["eval"]["weights_sha256"] = weights_digest(folder)
        atomic_write(folder / "config.json", lambda p: Path(p).write_text(json.dumps(cfg, indent=2) + "\n"))
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
