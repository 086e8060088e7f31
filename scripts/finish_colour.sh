#!/usr/bin/env bash
# The rest of a colour model after `mvq train tokenizer` on the picture set: its tokens and an AR prior, then
# shipped in float16 as weights/NAME and measured there with `mvq eval` on the test split (what users load).
#   [WHY="the card's reasons"] scripts/finish_colour.sh RUN_FOLDER NAME PRIOR_STEPS  (DATA=/work/data/pictures64 by default)
# The tokenizer itself: see README "Shipped models" (the commands are in each model's config.json and card).
set -euo pipefail
run=$1 name=$2 steps=$3
data=${DATA:-/work/data/pictures64}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1
cd "$(dirname "$0")/.."
mvq=.venv/bin/mvq
# the packed training array is encoded in memory (faster than reading its 70,000 PNGs back); resumable
$mvq train prior "$run" --data "$data/train/images.npy" --steps "$steps" --batch-size 128 --checkpoint-every 200 \
  --device cpu $( [ -d "$run/checkpoints-prior" ] && echo --resume )
.venv/bin/python scripts/ship_run.py "$run" "$name" --half --data "$data/test/images.npy" ${WHY:+--why "$WHY"}
