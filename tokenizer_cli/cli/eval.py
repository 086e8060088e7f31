"""`mvq eval`: reconstruction and generation quality of a model (FD, MSE, PSNR, SSIM, codebook use).

FD is the Fréchet distance in the features of the project's own classifier (see classifier.py).
Results go to stdout as a table, optionally to --json, and into the model folder's config.json
under "eval" (and its README.md) only when --model names a local folder (never a shipped model in the
package data, nor a Hub cache snapshot), the whole data set was measured (no --limit) and not --no-write.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from .. import data as data_io
from .. import files
from ..config import to_dict
from ..datasets import FASHION
from ..fitting import mismatch_notice
from ..images import DEFAULT_FIT, PictureTally
from ..pipeline import load_pipeline
from .common import (DEFAULT_MODEL, BatchOpt, ChoiceTemperatureOpt, DeviceOpt, FitOpt, JsonOpt, ModelOpt,
                     SamplerOpt, SeedOpt, StepsOpt, console, fail, pick_device, progress_bar, steps_number, warn)

if TYPE_CHECKING:
    from ..config import EvalResult


def eval_cmd(
    model: ModelOpt = DEFAULT_MODEL,
    data: Annotated[str | None, typer.Option("--data", help=f"'{FASHION}' (its 10,000 test images), an image folder or a packed images.npy. Default: the test split of the data the model was trained on, where it is on this machine.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=2, help="Use only the first N images (quick runs).")] = None,
    fit: FitOpt = DEFAULT_FIT,
    feature_net: Annotated[str, typer.Option("--feature-net", help="Classifier folder, or a shipped name, whose features FD uses ('auto': the shipped one made for the model's image shape).")] = "auto",
    json_out: JsonOpt = None,
    batch_size: BatchOpt = 500,
    seed: SeedOpt = 0,
    no_write: Annotated[bool, typer.Option("--no-write", help="Do not write the results into the model folder.")] = False,
    sampler: SamplerOpt = None,
    steps: StepsOpt = None,
    choice_temperature: ChoiceTemperatureOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Measure a model: reconstruction FD, MSE, PSNR, SSIM, codebook use, and generation FD of its prior.

    Generation FD samples as many images as it measures, with the AR prior where the model has one, or the
    sampler you choose (--sampler maskgit --steps 8). Only an evaluation of the whole data with the default
    sampler is written into the model folder."""
    from ..evaluate import evaluate_pipeline, why_not_recorded
    from ..hub import update_records

    dev = pick_device(device)
    files.check_writable(json_out)
    steps_n = steps_number(steps)
    pipe = load_pipeline(model, dev)
    default_kind = "ar" if pipe.prior is not None else "maskgit"
    chosen = sampler not in (None, default_kind) or steps_n is not None or choice_temperature is not None
    skip_reason = None if no_write else why_not_recorded(model, pipe, limit, chosen)
    write_into = not no_write and skip_reason is None
    if write_into:
        try:
            files.check_writable(folders=[pipe.folder])
        except data_io.InputError as err:
            fail(f"{err}: the results could not be written into the model folder; pass --no-write to only "
                 "print them")
    pictures = PictureTally(pipe.tokenizer.cfg.image_size, fit)
    result = evaluate_pipeline(pipe, data, limit, feature_net, batch_size, seed, progress=progress_bar,
                               command="mvq " + shlex.join(sys.argv[1:]), fit=fit, tally=pictures,
                               sampler=sampler, steps=steps_n, choice_temperature=choice_temperature)
    warn(mismatch_notice(pictures, pipe.tokenizer.cfg.channels, model))
    _print(model, result)
    warn(result.warning)
    if not pipe.priors:
        console.print("note: the model has no prior, so there is no generation FD (train one with `mvq train prior`)",
                      soft_wrap=True)
    if skip_reason is not None:
        console.print(f"note: {skip_reason}", soft_wrap=True, highlight=False)
    if json_out is not None:
        report = {"model": model, "folder": str(pipe.folder), **to_dict(result),
                  "written_to": str(pipe.folder / "config.json") if write_into else None}
        files.atomic_write(json_out, lambda p: Path(p).write_text(json.dumps(report, indent=2) + "\n"))
        console.print(f"wrote {json_out}")
    if write_into:
        try:
            update_records(pipe.folder, eval=result)
        except OSError as err:
            fail(f"could not write the results into {pipe.folder} ({err.strerror or err}); the table above is "
                 "complete, pass --no-write to skip this step")
        console.print(f"wrote the results into {pipe.folder / 'config.json'} (\"eval\") and README.md")


def _print(model: str, r: EvalResult) -> None:
    def num(v, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    table = Table(title=f"mvq eval {model}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("data", r.eval_data),
        ("feature net (FD)", r.feature_net),
        ("reconstruction FD", num(r.recon_fd, ".4g")),
        ("generation FD", num(r.generation_fd, ".4g") if r.generation_fd is not None else "- (no prior)"),
        ("sampled by", r.sampler or "-"),
        ("FD real train vs test (floor)", num(r.fd_train_vs_test, ".4g") if r.fd_train_vs_test is not None
         else "- (no train split beside the data)"),
        ("MSE ([-1, 1] pixels)", num(r.mse, ".5f")),
        ("PSNR dB", num(r.psnr, ".2f")),
        ("SSIM", num(r.ssim, ".4f")),
        ("codebook usage", num(r.codebook_usage, ".3f")),
        ("tokens used", str(r.tokens_used)),
        ("perplexity", num(r.perplexity, ".2f")),
        ("feature net test accuracy", num(r.feature_net_accuracy, ".4f")),
        ("prior seed", str(r.seed)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)  # the table is the command's output: stdout
