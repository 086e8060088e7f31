"""The `mvq` command: a Typer app whose commands live one per module."""

from __future__ import annotations

import warnings

from . import benchmark, decode, encode, explore, models, push, reconstruct, sample, train
from .common import Typer, cli_command
from .eval import eval_cmd

app = Typer(
    name="mvq",
    help="Small-latent image tokenizers (VQ, FSQ, Masked VQ) and a fast Transformer prior.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("encode", no_args_is_help=True)(cli_command(encode.encode))
app.command("decode", no_args_is_help=True)(cli_command(decode.decode))
app.command("reconstruct", no_args_is_help=True)(cli_command(reconstruct.reconstruct))
app.command("sample")(cli_command(sample.sample))
app.command("benchmark")(cli_command(benchmark.benchmark))
app.command("explore")(cli_command(explore.explore))
app.command("models")(cli_command(models.models))
app.command("eval")(cli_command(eval_cmd))
app.command("push", no_args_is_help=True)(cli_command(push.push))
app.add_typer(train.app, name="train")


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"warning: {message}\n"  # a user reads the message, not the library's source line


def main() -> None:
    warnings.formatwarning = _one_line_warning
    app()  # Ctrl-C: cli_command prints what was kept
