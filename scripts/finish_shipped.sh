#!/usr/bin/env bash
# For each named shipped model: wait until its tokenizer is trained, then train its prior and evaluate it.
# Usage: scripts/finish_shipped.sh name ...   (runs beside scripts/train_shipped.sh queues)
set -euo pipefail
cd "$(dirname "$0")/.."
for name in "$@"; do
  until [ -f "weights/$name/config.json" ] && [ ! -d "weights/$name/checkpoints" ]; do sleep 20; done
  if [ ! -f "weights/$name/prior.safetensors" ]; then scripts/train_shipped_priors.sh "$name"; fi
  if python -c "import json,sys; sys.exit(0 if json.load(open('weights/$name/config.json')).get('eval') else 1)"; then
    echo "== $name already evaluated"; continue
  fi
  echo "== eval $name"
  # `mvq eval` never writes into shipped models (package data): the results come back through --json.
  mvq eval --model "$name" --device cpu --json "weights/$name/eval.tmp.json"
  python - "$name" <<'PY'
import json, sys
from pathlib import Path
from tokenizer_cli.cards import model_card
d = Path("weights") / sys.argv[1]
ev = json.loads((d / "eval.tmp.json").read_text())
cfg = json.loads((d / "config.json").read_text())
cfg["eval"] = {k: v for k, v in ev.items() if k not in ("model", "folder", "written_to")}
(d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
(d / "README.md").write_text(model_card(cfg, d.name))
(d / "eval.tmp.json").unlink()
PY
done
