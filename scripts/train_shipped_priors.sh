#!/usr/bin/env bash
# Trains a prior (4 layers, width 128, 4 heads: the same for every model, so timings compare)
# into each shipped Fashion-MNIST model of weights/. Usage: scripts/train_shipped_priors.sh [name ...]
set -euo pipefail
cd "$(dirname "$0")/.."
ORDER=(mvq-fmnist-t2 vq-fmnist-t2 fsq-fmnist-t2 mvq-fmnist-t5 vq-fmnist-t5 fsq-fmnist-t5 vq-fmnist-t16 vq-fmnist-grid49)
for name in "${@:-${ORDER[@]}}"; do
  echo "== prior for $name"
  # Long sequences cost more per step: the same number of tokens seen, fewer sequences a batch.
  case "$name" in
    *grid49) batch=64 steps=3000 ;;
    *t16) batch=128 steps=3000 ;;
    *) batch=256 steps=3000 ;;
  esac
  mvq train prior "weights/$name" --data fashion-mnist --layers 4 --heads 4 --width 128 \
    --steps "$steps" --batch-size "$batch" --seed 0 --device cpu
done
