"""Make a finished scripts/compare.py run a shipped model: copy it to weights/NAME with its own card.

Usage: python scripts/ship_run.py RUN_FOLDER NAME [--half] [--data DATA] [--why TEXT]
  RUN_FOLDER  e.g. runs/compare/runs/mvq-k16g4-t2-s0 (tokenizer, prior and `mvq eval` all done)
  --half      store the weights in float16 (scripts/half_weights.py) and measure them again with
              `mvq eval --data DATA`, so the card's numbers are those of the shipped files
The run's config.json (training commands, metrics, eval) is kept; README.md is rewritten for NAME.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tokenizer_cli.config import EvalResult
from tokenizer_cli.hub import read_config, update_records, write_config

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("--half", action="store_true")
    ap.add_argument("--data", default="fashion-mnist", help="eval data for --half")
    ap.add_argument("--why", help="the model's reasons for its design, for its card (config.json \"why\")")
    a = ap.parse_args()
    cfg = read_config(a.run)
    if (cfg.eval is None and not a.half) or not (a.run / "prior.safetensors").is_file():
        sys.exit(f"error: {a.run} has no prior or no eval yet: finish it with scripts/compare.py first "
                 "(--half measures the shipped files itself)")
    dest = WEIGHTS / a.name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    for name in ("config.json", "tokenizer.safetensors", "prior.safetensors", "prior-maskgit.safetensors"):
        if (a.run / name).is_file():  # all but the MaskGIT prior are there (read_config and the check above)
            shutil.copy2(a.run / name, dest / name)
    if a.half:
        subprocess.run([sys.executable, str(Path(__file__).with_name("half_weights.py")), str(dest)], check=True)
        mvq = Path(sys.executable).with_name("mvq")
        report = dest / "eval.tmp.json"
        args = ["eval", "--model", a.name, "--data", a.data, "--device", "cpu"]  # by its shipped name, as users load it
        subprocess.run([str(mvq) if mvq.is_file() else "mvq", *args, "--json", str(report)], check=True)
        ev = json.loads(report.read_text())  # `mvq eval` never writes into shipped models itself
        report.unlink()
        fields = {f.name for f in dataclasses.fields(EvalResult)}
        ev = EvalResult(**{k: v for k, v in ev.items() if k in fields})
        update_records(dest, eval=dataclasses.replace(ev, command="mvq " + shlex.join(args)))
    cfg = read_config(dest)
    if a.why:
        cfg.other["why"] = a.why
    write_config(dest, cfg)  # today's format, and the card under its shipped name
    print(f"shipped {a.run} as {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
