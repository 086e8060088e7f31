#!/usr/bin/env bash
# Trains the shipped Fashion-MNIST tokenizers into weights/ (same encoder/decoder, data, steps, seed).
# Usage: scripts/train_shipped.sh [name ...]   (no names: all of them, in order)
# Needs: apt-get install dataset-fashion-mnist; about 6 minutes a model on 2 idle CPU cores.
# Several queues may run at once (give each OMP_NUM_THREADS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-1500}
COMMON=(--data fashion-mnist --steps "$STEPS" --batch-size 128 --base-channels 16 --seed 0 --device cpu)
declare -A ARGS=(
  [mvq-fmnist-t2]="--quantizer mvq --tokens 2 --codebook-size 16 --mask-bits 4"
  [vq-fmnist-t2]="--quantizer vq --tokens 2 --codebook-size 240"
  [fsq-fmnist-t2]="--quantizer fsq --tokens 2 --levels 8,6,5"
  [mvq-fmnist-t5]="--quantizer mvq --tokens 5 --codebook-size 16 --mask-bits 4"
  [vq-fmnist-t5]="--quantizer vq --tokens 5 --codebook-size 240"
  [fsq-fmnist-t5]="--quantizer fsq --tokens 5 --levels 8,6,5"
  [vq-fmnist-t16]="--quantizer vq --tokens 16 --codebook-size 16"
  [vq-fmnist-grid49]="--quantizer vq --tokens 49 --layout grid --codebook-size 16"
)
ORDER=(mvq-fmnist-t2 vq-fmnist-t2 fsq-fmnist-t2 mvq-fmnist-t5 vq-fmnist-t5 fsq-fmnist-t5 vq-fmnist-t16 vq-fmnist-grid49)
for name in "${@:-${ORDER[@]}}"; do
  echo "== $name"
  # An interrupted run continues from its last checkpoint; anything else starts afresh.
  if [ -f "weights/$name/checkpoints/latest" ]; then again=--resume; else again=--overwrite; fi
  # shellcheck disable=SC2086
  mvq train tokenizer "weights/$name" ${ARGS[$name]} "${COMMON[@]}" "$again"
done
