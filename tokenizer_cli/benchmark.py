"""Token-sampling speed of priors: median wall time per image after warm-up, all in one process."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

import torch

from .config import MASKGIT_STEPS

if TYPE_CHECKING:
    from .config import ModelConfig


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_generate(prior, batch: int, repeats: int, **options) -> float:
    """Median seconds for one call of prior.generate(batch, **options), after one warm-up call (which compiles,
    with the AR prior's graph=True)."""
    device = next(prior.parameters()).device
    prior.generate(batch, seed=0, **options)
    _sync(device)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        prior.generate(batch, seed=r + 1, **options)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def quality(cfg: ModelConfig) -> tuple[str, float | None]:
    """The best quality figure a model folder has: generation FD if evaluated, else reconstruction MSE."""
    if cfg.eval is not None and cfg.eval.generation_fd is not None:
        return "gen FD", cfg.eval.generation_fd
    if cfg.metrics is not None and cfg.metrics.mse is not None:
        return "recon MSE", cfg.metrics.mse
    return "-", None


def _describe(name: str, pipe, prior) -> dict:
    tok = pipe.tokenizer
    return {"model": name, "quantizer": tok.cfg.quantizer.kind, "description": tok.cfg.quantizer.describe(),
            "tokens": tok.tokens_per_image, "vocab": tok.vocab_size,
            "image": f"{tok.cfg.image_size}x{tok.cfg.image_size}x{tok.cfg.channels}",  # speed-ups compare like with like
            "prior_params": prior.num_parameters()}


def measure(name: str, pipe, repeats: int, batch_sizes: tuple[int, ...] = (1, 64), no_cache: bool = True,
            graph: bool = False) -> dict:
    """Sampling times of the model's AR prior (KV cache; also without, and as compiled graphs, if asked)."""
    prior, tok = pipe.prior, pipe.tokenizer
    metric, value = quality(pipe.config)
    row = {**_describe(name, pipe, prior), "quality_metric": metric, "quality": value}
    for b in batch_sizes:
        row[f"ms_per_image_b{b}"] = time_generate(prior, b, repeats) / b * 1000
    big = max(batch_sizes)
    row["images_per_s"] = 1000 / row[f"ms_per_image_b{big}"]
    row["ms_per_token"] = row[f"ms_per_image_b{big}"] * big / tok.tokens_per_image
    if graph:  # the same sampling as one compiled graph per step
        for b in batch_sizes:
            row[f"ms_per_image_b{b}_graph"] = time_generate(prior, b, repeats, graph=True) / b * 1000
    if no_cache:
        row[f"ms_per_image_b{big}_no_cache"] = time_generate(prior, big, repeats, use_cache=False) / big * 1000
    return row


def measure_maskgit(name: str, pipe, repeats: int, batch_sizes: tuple[int, ...] = (1, 64),
                    steps: int | None = None) -> dict:
    """Sampling times of the model's MaskGIT prior, decoding in `steps` passes (default min(8, T); capped at T)."""
    prior = pipe.maskgit_prior
    steps = min(steps or MASKGIT_STEPS, prior.cfg.tokens)
    row = {**_describe(name, pipe, prior), "sampler": "maskgit", "steps": steps}
    for b in batch_sizes:
        row[f"ms_per_image_b{b}"] = time_generate(prior, b, repeats, steps=steps) / b * 1000
    row["images_per_s"] = 1000 / row[f"ms_per_image_b{max(batch_sizes)}"]
    return row


def speedups(rows: list[dict], tokens: int, batch: int = 64) -> list[dict]:
    """For each model at `tokens`, its speed-up over each longer VQ baseline for the same images, and whether that
    baseline is as good.

    A baseline 'matches' when its quality is at least as good (lower FD or MSE), the paper's
    comparison: how much faster the short sequence is than the VQ that needs more tokens.
    """
    key = f"ms_per_image_b{batch}"
    short = [r for r in rows if r["tokens"] == tokens]
    baselines = [r for r in rows if r["quantizer"] == "vq" and r["tokens"] > tokens]
    out = []
    for s in short:
        for b in (b for b in baselines if b.get("image") == s.get("image")):
            comparable = s["quality"] is not None and b["quality"] is not None and s["quality_metric"] == b["quality_metric"]
            out.append({"model": s["model"], "baseline": b["model"], "baseline_tokens": b["tokens"],
                        "speedup": b[key] / s[key],
                        "baseline_as_good": bool(comparable and b["quality"] <= s["quality"])})
    equal_t = [r for r in rows if r["tokens"] == tokens and r["quantizer"] == "vq"]
    for s in short:
        for b in equal_t:
            if b is not s and b.get("image") == s.get("image"):
                out.append({"model": s["model"], "baseline": b["model"], "baseline_tokens": b["tokens"],
                            "speedup": b[key] / s[key], "baseline_as_good": None})
    return out


def equal_quality(rows: list[dict], batch: int = 64) -> list[dict]:
    """For each VQ baseline, the fastest other model for the same images whose quality is at least as good
    (same metric, lower or equal), and how much faster it samples: the speed-up at equal quality."""
    key = f"ms_per_image_b{batch}"
    out = []
    for b in (r for r in rows if r["quantizer"] == "vq" and r["quality"] is not None):
        rivals = [r for r in rows if r is not b and r.get("image") == b.get("image") and r["tokens"] < b["tokens"]
                  and r["quality"] is not None and r["quality_metric"] == b["quality_metric"]
                  and r["quality"] <= b["quality"]]
        best = min(rivals, key=lambda r: r[key], default=None)
        out.append({"baseline": b["model"], "baseline_tokens": b["tokens"], "baseline_quality": b["quality"],
                    "model": best["model"] if best else None, "tokens": best["tokens"] if best else None,
                    "quality": best["quality"] if best else None,
                    "speedup": b[key] / best[key] if best else None})
    return out
