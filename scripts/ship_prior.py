"""Add a prior trained in a copy of a shipped model to the shipped folder, in float16, with its records and card.

Usage: python scripts/ship_prior.py RUN_FOLDER NAME [--kind maskgit|ar]
  RUN_FOLDER  a copy of weights/NAME in which `mvq train prior --kind KIND` was run
The tokenizer of both folders must be the same (else refused). The prior's file is stored in float16 (as
scripts/half_weights.py stores it), its config and training record go into NAME's config.json and its card is
rewritten. The folder's evaluation stays: its digest covers the tokenizer and the prior that sampled it, and
adding a MaskGIT prior changes neither.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from half_weights import halve  # noqa: E402

from tokenizer_cli.config import PRIOR_KINDS  # noqa: E402
from tokenizer_cli.files import atomic_write  # noqa: E402
from tokenizer_cli.hub import read_config, weights_digest, write_config  # noqa: E402
from tokenizer_cli.pipeline import load_pipeline  # noqa: E402

WEIGHTS = HERE.parent / "weights"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("--kind", choices=sorted(PRIOR_KINDS), default="maskgit")
    ap.add_argument("--weights", type=Path, default=WEIGHTS, help=argparse.SUPPRESS)  # tests ship elsewhere
    a = ap.parse_args(argv)
    kind, dest = PRIOR_KINDS[a.kind], a.weights / a.name
    run_cfg = read_config(a.run)
    if getattr(run_cfg, kind.key) is None or not (a.run / kind.file).is_file():
        sys.exit(f"error: {a.run} has no {kind.title}")
    if load_pipeline(str(a.run), load_prior=False).tokenizer_id != load_pipeline(str(dest), load_prior=False).tokenizer_id:
        sys.exit(f"error: {a.run} holds another tokenizer than {dest}: its prior models other tokens")
    before = weights_digest(dest)
    state = halve(load_file(str(a.run / kind.file)))
    atomic_write(dest / kind.file, lambda p: save_file(state, p))
    cfg = dataclasses.replace(read_config(dest), **{kind.key: getattr(run_cfg, kind.key),
                                                   kind.record: getattr(run_cfg, kind.record)})
    write_config(dest, cfg)
    load_pipeline(str(dest)).sampler(a.kind)  # loads strictly, or raises
    kept = "kept" if weights_digest(dest) == before else "now stale"
    print(f"shipped {a.run / kind.file} into {dest} (float16); its evaluation is {kept}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
