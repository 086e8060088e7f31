#!/usr/bin/env bash
# For each named shipped model: wait until its tokenizer is trained, then train its prior and evaluate it.
# Usage: scripts/finish_shipped.sh name ...   (runs beside scripts/train_shipped.sh queues)
set -euo pipefail
cd "$(dirname "$0")/.."
for name in "$@"; do
  until [ -f "weights/$name/config.json" ] && [ ! -d "weights/$name/checkpoints" ]; do sleep 20; done
  if [ ! -f "weights/$name/prior.safetensors" ]; then scripts/train_shipped_priors.sh "$name"; fi
  if python -c "import sys; from pathlib import Path; from tokenizer_cli.hub import read_config; sys.exit(0 if read_config(Path('weights/$name')).eval else 1)"; then
    echo "== $name already evaluated"; continue
  fi
  echo "== eval $name"
  # `mvq eval` never writes into shipped models (package data): the results come back through --json.
  mvq eval --model "$name" --device cpu --json "weights/$name/eval.tmp.json"
  python - "$name" <<'PY'
import dataclasses, json, sys
from pathlib import Path
from tokenizer_cli.config import EvalResult
from tokenizer_cli.hub import update_records
d = Path("weights") / sys.argv[1]
ev = json.loads((d / "eval.tmp.json").read_text())
update_records(d, eval=EvalResult(**{k: v for k, v in ev.items() if k in {f.name for f in dataclasses.fields(EvalResult)}}))
(d / "eval.tmp.json").unlink()
PY
done
