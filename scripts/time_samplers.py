"""Sampling time per image of the two priors at the shipped size (4 layers, 4 heads, width 128), random weights:
MaskGIT in --steps parallel passes against the AR prior with its KV cache, in interleaved runs (medians and
minima), so that a load that changes during the run reaches both alike.

    python scripts/time_samplers.py [--tokens 16 49] [--batch 1 64] [--steps 8] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tokenizer_cli.config import MaskGITConfig, PriorConfig
from tokenizer_cli.models import MaskGITPrior, Prior


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[16, 49])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.manual_seed(0)
    print(f"{dev}, {torch.get_num_threads()} threads, torch {torch.__version__}; ms per image, median (min)")
    for T in a.tokens:
        shape = dict(vocab_size=a.vocab, tokens=T, n_layer=4, n_head=4, n_embd=128)
        priors = {"AR + KV cache": (Prior(PriorConfig(**shape)), {}),
                  f"MaskGIT S={min(a.steps, T)}": (MaskGITPrior(MaskGITConfig(**shape)), {"steps": min(a.steps, T)})}
        for b in a.batch:
            times: dict[str, list[float]] = {name: [] for name in priors}
            for prior, options in priors.values():
                prior.to(dev).generate(b, seed=0, **options)  # warm-up
            for r in range(15 if b == 1 else 7):
                for name, (prior, options) in priors.items():
                    t0 = time.perf_counter()
                    prior.generate(b, seed=r + 1, **options)
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    times[name].append((time.perf_counter() - t0) / b * 1000)
            cells = [f"{name} {statistics.median(v):8.3f} ({min(v):8.3f})" for name, v in times.items()]
            ar, mg = (statistics.median(v) for v in times.values())
            print(f"T={T:3d} batch {b:3d}: " + " | ".join(cells) + f" | AR / MaskGIT {ar / mg:.2f}x")


if __name__ == "__main__":
    main()
