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
  mvq eval --model "$name" --device cpu
done
