"""`mvq benchmark`: token-sampling speed of the models at T tokens against long-sequence VQ baselines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ..config import MASKGIT_STEPS
from ..files import atomic_write
from ..hub import read_config, shipped_models, shipped_root
from ..pipeline import load_pipeline
from .common import DeviceOpt, JsonOpt, console, fail, pick_device, stdout_console

if TYPE_CHECKING:
    import torch


def _candidates(tokens: int) -> list[str]:
    """Shipped models with a prior (of either kind) at T = tokens, plus VQ models with more tokens (the baselines)."""
    names = []
    for name in shipped_models():
        cfg = read_config(shipped_root() / name)
        t, kind = cfg.tokenizer.tokens, cfg.tokenizer.quantizer.kind
        if cfg.prior_kinds and (t == tokens or (kind == "vq" and t > tokens)):
            names.append(name)
    return names


def benchmark(
    tokens: Annotated[int, typer.Option("--tokens", "-t", help="Tokens per image of the models to compare.")] = 2,
    models: Annotated[list[str] | None, typer.Option("--model", "-m", help="Models to time (repeat the option); default: shipped models at --tokens and the longer VQ baselines.")] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, max=1000, help="Timed runs per measurement (the median is reported).")] = 5,
    graph: Annotated[bool, typer.Option("--graph", help="Also time the AR prior's sampling as compiled graphs (torch.compile 'reduce-overhead'; CUDA graphs on a GPU).")] = False,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help=f"MaskGIT priors: decoding passes (default {MASKGIT_STEPS}; capped at each model's T).")] = None,
    json_out: JsonOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Time token sampling (ms per image at batch 1 and 64) and report speed-ups: of the AR priors (with and
    without KV cache) and of the MaskGIT priors (parallel decoding in --steps passes), where a model has them."""
    import torch

    from ..benchmark import equal_quality, measure, measure_maskgit, speedups

    dev = pick_device(device)
    names = models or _candidates(tokens)
    pipes = {name: load_pipeline(name, dev, need_prior=True) for name in names}
    if not any(p.tokenizer.tokens_per_image == tokens for p in pipes.values()):
        fail(f"no model with {tokens} tokens per image and a prior (try `mvq models`)")
    rows, maskgit_rows = [], []  # AR priors (with the quality and speed-up figures), MaskGIT priors
    with console.status("timing priors...") as status:
        for name, pipe in pipes.items():
            status.update(f"timing {name}")
            if pipe.prior is not None:
                rows.append(measure(name, pipe, repeats, graph=graph))
            if pipe.maskgit_prior is not None:
                maskgit_rows.append(measure_maskgit(name, pipe, repeats, steps=steps))
    ups, same_quality = speedups(rows, tokens), equal_quality(rows)
    _print(rows, ups, same_quality, dev)
    _print_maskgit(maskgit_rows, rows)
    if json_out is not None:
        result = {"device": str(dev), "threads": torch.get_num_threads(), "repeats": repeats, "tokens": tokens,
                  "rows": rows, "speedups": ups, "equal_quality": same_quality, "maskgit_rows": maskgit_rows}
        atomic_write(json_out, lambda p: Path(p).write_text(json.dumps(result, indent=2) + "\n"))
        console.print(f"wrote {json_out}")


def _print_maskgit(maskgit_rows: list[dict], ar_rows: list[dict]) -> None:
    if not maskgit_rows:
        return
    ar = {r["model"]: r for r in ar_rows}
    table = Table(title="MaskGIT parallel decoding against the AR prior (ms per image; speed-up = AR / MaskGIT)")
    for col in ("model", "T", "steps", "prior params", "MaskGIT b=1", "MaskGIT b=64", "AR b=1", "AR b=64",
                "speed-up b=1", "speed-up b=64"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in maskgit_rows:
        a = ar.get(r["model"])
        cells = [f"{a['ms_per_image_b1']:.3f}", f"{a['ms_per_image_b64']:.4f}",
                 f"{a['ms_per_image_b1'] / r['ms_per_image_b1']:.2f}x",
                 f"{a['ms_per_image_b64'] / r['ms_per_image_b64']:.2f}x"] if a else ["-"] * 4
        table.add_row(r["model"], str(r["tokens"]), str(r["steps"]), f"{r['prior_params']:,}",
                      f"{r['ms_per_image_b1']:.3f}", f"{r['ms_per_image_b64']:.4f}", *cells)
    stdout_console().print(table)


def _print(rows: list[dict], ups: list[dict], same_quality: list[dict], dev: torch.device) -> None:
    import torch

    if not rows:
        return
    out = stdout_console()
    table = Table(title=f"AR token sampling on {dev} ({torch.get_num_threads()} threads), median after warm-up")
    for col in ("model", "quantizer", "T", "vocab", "prior params", "ms/img b=1", "ms/img b=64",
                "img/s b=64", "ms/token b=64", "ms/img b=64 no cache", "quality"):
        table.add_column(col, justify="left" if col in ("model", "quantizer") else "right")
    for r in rows:
        quality = f"{r['quality']:.4g} ({r['quality_metric']})" if r["quality"] is not None else "-"
        table.add_row(r["model"], r.get("description", r["quantizer"]), str(r["tokens"]), str(r["vocab"]), f"{r['prior_params']:,}",
                      f"{r['ms_per_image_b1']:.3f}", f"{r['ms_per_image_b64']:.4f}", f"{r['images_per_s']:,.0f}",
                      f"{r['ms_per_token']:.3f}", f"{r['ms_per_image_b64_no_cache']:.4f}", quality)
    out.print(table)
    if rows and "ms_per_image_b64_graph" in rows[0]:
        gt = Table(title="eager against compiled-graph sampling (ms per image)")
        for col in ("model", "eager b=1", "graph b=1", "eager b=64", "graph b=64"):
            gt.add_column(col, justify="left" if col == "model" else "right")
        for r in rows:
            gt.add_row(r["model"], f"{r['ms_per_image_b1']:.3f}", f"{r['ms_per_image_b1_graph']:.3f}",
                       f"{r['ms_per_image_b64']:.4f}", f"{r['ms_per_image_b64_graph']:.4f}")
        out.print(gt)
    if ups:
        sp = Table(title="speed-up of short-token sampling (batch 64)")
        for col in ("model", "baseline", "baseline T", "speed-up", "baseline at least as good"):
            sp.add_column(col)
        for u in ups:
            good = "-" if u["baseline_as_good"] is None else ("yes" if u["baseline_as_good"] else "no")
            sp.add_row(u["model"], u["baseline"], str(u["baseline_tokens"]), f"{u['speedup']:.1f}x", good)
        out.print(sp)
    if same_quality:
        eq = Table(title="speed-up at equal quality: the fastest model at least as good as each VQ baseline (batch 64)")
        for col in ("baseline", "T", "quality", "fastest as good", "T ", "its quality", "speed-up"):
            eq.add_column(col)
        for e in same_quality:
            found = e["model"] is not None
            eq.add_row(e["baseline"], str(e["baseline_tokens"]), f"{e['baseline_quality']:.4g}",
                       e["model"] or "none", str(e["tokens"]) if found else "-",
                       f"{e['quality']:.4g}" if found else "-", f"{e['speedup']:.1f}x" if found else "-")
        out.print(eq)
