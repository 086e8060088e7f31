"""CPU seconds of inference at several batch sizes: a tokenizer's encode+decode and a feature net's features,
over the same random images (what tokenizer_cli/models/cpu_pieces.py's CPU_PIECE_PIXELS rests on).

    OMP_NUM_THREADS=1 python scripts/cpu_batch_sweep.py [--model fsq-pictures-t64] [--feature-net fd-pictures-classifier]

Chunking is switched off here (CPU_PIECE_PIXELS set huge) so each batch size is timed as it is.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from tokenizer_cli import Pipeline
from tokenizer_cli.classifier import load_feature_net
from tokenizer_cli.models import cpu_pieces


def cpu_seconds(fn, x: torch.Tensor, batch: int) -> float:
    start = time.process_time()
    with torch.inference_mode():
        for part in x.split(batch):
            fn(part)
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="fsq-pictures-t64")
    ap.add_argument("--feature-net", default="fd-pictures-classifier")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batches", type=int, nargs="+", default=[500, 128, 64, 32])
    args = ap.parse_args()
    cpu_pieces.CPU_PIECE_PIXELS = 1 << 62
    tokenizer = Pipeline.from_pretrained(args.model).tokenizer.eval()
    net, _ = load_feature_net(args.feature_net)
    cfg = tokenizer.cfg
    x = torch.rand(args.images, cfg.channels, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
    x = x * 2 - 1
    print(f"# {platform.processor() or platform.machine()}, {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} thread(s), {args.images} images {cfg.image_size}x{cfg.image_size}x{cfg.channels}")
    for batch in args.batches:
        roundtrip = cpu_seconds(lambda p: tokenizer.decode(*tokenizer.encode(p, with_masks=True)), x, batch)
        features = cpu_seconds(net.eval().features, x, batch)
        print(f"batch {batch:4d}: {args.model} encode+decode {roundtrip:6.2f} CPU s, "
              f"{args.feature_net} features {features:5.2f} CPU s", flush=True)


if __name__ == "__main__":
    main()
