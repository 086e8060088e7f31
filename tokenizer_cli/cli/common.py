"""Shared CLI pieces: Annotated option aliases, the stderr console, device choice, progress bars."""

from __future__ import annotations

import functools
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Iterator, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer.core import TyperCommand, TyperGroup, TyperOption

from ..config import MASKGIT_CHOICE_TEMPERATURE, MASKGIT_STEPS, PRIOR_KINDS
from ..files import READABLE_TILE
from ..hub import DEFAULT_MODEL  # noqa: F401  (re-exported: the default of every --model)
from ..images import FIT_HELP, FITS

if TYPE_CHECKING:  # torch is imported inside the commands: `mvq --help` starts in a fraction of a second
    import torch

console = Console(stderr=True, soft_wrap=True)  # messages and progress on stderr, so stdout stays parseable;
# soft_wrap: a message is one line in a log or a pipe (80 columns there), never broken mid-sentence


def _flags_without_type(params: list) -> list:
    """A flag takes no value, so its help line shows no type: Typer's rich help prints a set metavar in place of
    the type (`<bool>` otherwise), and click's plain help ignores a flag's metavar."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    return params


class _Command(TyperCommand):
    def get_params(self, ctx):  # with the `--help` option that click makes for each command
        return _flags_without_type(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx):
        return _flags_without_type(super().get_params(ctx))


class Typer(typer.Typer):
    """typer.Typer whose help lists flags (and `--help`) without a `<bool>` type. The fix lives in the command
    classes, so `app()` (the installed `mvq`) and `CliRunner().invoke(app)` (the tests) show the same help."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cls=_Group, **kwargs)

    def command(self, *args, **kwargs):
        return super().command(*args, cls=_Command, **kwargs)


ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Local model folder, shipped default name (see `mvq models`), or Hub id owner/name[@rev]."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (GPU when present) | cpu | cuda | cuda:N.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, max=65536, help="Images per forward pass.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]


def one_of(*values: str) -> Callable[[str], str]:
    """A Typer option callback that accepts only `values`, or None for an option left out (a usage error
    otherwise, exit code 2)."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in values:
            raise typer.BadParameter(f"must be one of {', '.join(values)}; got {value!r}")
        return value

    return check


def finite(value: float | None) -> float | None:
    """A Typer option callback that refuses inf and nan (a usage error, exit code 2)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


SamplerOpt = Annotated[str | None, typer.Option("--sampler", metavar="ar|maskgit", callback=one_of(*PRIOR_KINDS), help="ar: the autoregressive prior, one token at a time | maskgit: the MaskGIT prior, parallel decoding in --steps passes. Default: ar where the model has it, else maskgit.")]
StepsOpt = Annotated[str | None, typer.Option("--steps", metavar="S", help=f"MaskGIT: decoding passes, 1 to T (default: {MASKGIT_STEPS}, or T if smaller).")]
ChoiceTemperatureOpt = Annotated[float | None, typer.Option("--choice-temperature", min=0.0, callback=finite, help=f"MaskGIT: Gumbel noise on the confidence that picks the tokens kept at each step, annealed to 0 (default {MASKGIT_CHOICE_TEMPERATURE}; 0 keeps the most confident).")]


def steps_number(text: str | None) -> int | None:
    """--steps as a number; its range (1 to T) is checked once the model is loaded."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        fail(f"--steps must be a whole number from 1 to the model's tokens per image, got {text!r}")


MaskSamplingOpt = Annotated[str, typer.Option("--mask-sampling", callback=one_of("learned", "uniform"), help="MVQ with sampled masks, where a token has no stored mask: 'learned' (p(m | k) from training) or 'uniform'.")]
MaskTemperatureOpt = Annotated[float, typer.Option("--mask-temperature", min=0.0, callback=finite, help="Temperature of the mask draw; 0 takes the most likely mask.")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Also write the results to this JSON file.")]
FitOpt = Annotated[str, typer.Option("--fit", callback=one_of(*FITS), help=FIT_HELP)]
ScaleOpt = Annotated[int | None, typer.Option("--scale", min=1, max=64, help=f"Enlarge each image of a sheet N times (nearest neighbour); default: the smallest N that makes tiles at least {READABLE_TILE} px.")]


class CliError(Exception):
    """A user-facing error: printed as one `Error: ...` line, exit code 1."""


def fail(message: str) -> NoReturn:
    raise CliError(message)


def warn(message: str | None) -> None:
    """One `warning: ...` line on stderr (nothing for None)."""
    if message:
        console.print(f"warning: {message}", style="yellow", highlight=False, soft_wrap=True, markup=False)


NOTHING_PARTIAL = "outputs are written whole or not at all, so nothing partial was left"
_interrupt_note: list[Callable[[], str]] = []  # of the command running in this process


def on_interrupt(note: Callable[[], str]) -> None:
    """What the line printed on Ctrl-C says the running command kept and what not (else NOTHING_PARTIAL)."""
    _interrupt_note[:] = [note]


def cli_command(func: Callable) -> Callable:
    """Known errors become one `Error: ...` line on stderr and exit code 1, never a traceback.

    Any operating-system failure (permission denied, disk full, read-only file system, ...) is known too:
    one line naming the path it happened on. Ctrl-C gives one `Interrupted: ...` line (what was kept, what
    not: see on_interrupt) and exit code 130; caught here, as Typer would turn it into a silent exit 130.
    """
    from ..config import ConfigError
    from ..data import BadArgument, InputError
    from ..hub import BadCheckpoint, ModelNotFound

    known = (CliError, InputError, ModelNotFound, BadCheckpoint, ConfigError, OSError)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        _interrupt_note.clear()
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            note = _interrupt_note[0]() if _interrupt_note else NOTHING_PARTIAL
            console.print(f"Interrupted: {note}", style="yellow", highlight=False, soft_wrap=True, markup=False)
            raise typer.Exit(130) from None
        except known as err:
            if os.environ.get("MVQ_DEBUG"):
                raise
            message = os_error_line(err) if isinstance(err, OSError) else str(err)
            if isinstance(err, BadArgument):
                message = f"--{err.name.replace('_', '-')}: {err.message}"
            console.print(f"Error: {message}", style="red", highlight=False, soft_wrap=True, markup=False)
            raise typer.Exit(1)

    return wrapper


def os_error_line(err: OSError) -> str:
    """`PATH: reason` on one line (`PATH -> PATH2: reason` for a rename)."""
    reason = err.strerror or (str(err).splitlines()[0] if str(err) else type(err).__name__)
    if err.filename is None:
        return reason
    where = os.fsdecode(err.filename)
    if err.filename2 is not None:
        where += f" -> {os.fsdecode(err.filename2)}"
    return f"{where}: {reason}"


def inference_mode(func: Callable) -> Callable:
    """`torch.inference_mode()` as a decorator that imports torch only when the function runs."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import torch

        with torch.inference_mode():
            return func(*args, **kwargs)

    return wrapper


def pick_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        fail(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        fail(f"device {name!r} asked for, but no CUDA GPU is available here (use --device cpu or auto)")
    if device.type not in ("cpu", "cuda"):
        fail(f"device {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return device


class Bar:
    """A rich progress bar with one task; `advance(n, **fields)` shows live stats."""

    def __init__(self, progress: Progress, task):
        self.progress, self.task = progress, task
        self._logged = progress.tasks[0].completed if progress.tasks else 0.0

    def advance(self, n: int = 1, **fields) -> None:
        stats = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        self.progress.update(self.task, advance=n, stats=stats)
        if not console.is_terminal:  # logs redirected to a file get a line every 10%
            task = self.progress.tasks[0]
            if task.total and task.completed >= self._logged + task.total / 10:
                self._logged = task.completed
                console.print(f"{task.description}: {task.completed:.0f}/{task.total:.0f} "
                              f"{task.elapsed or 0:.0f}s {stats}", highlight=False)


class _SilentBar(Bar):
    def __init__(self):
        pass

    def advance(self, n: int = 1, **fields) -> None:
        pass


@contextmanager
def progress_bar(description: str, total: int | None, start: int = 0) -> Iterator[Bar]:
    """A progress bar on stderr; silent on data-parallel ranks other than 0."""
    from .. import distributed

    if not distributed.is_main():
        yield _SilentBar()
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}")]
    # Not on a terminal (a log, a pipe) the bar is not drawn: Bar.advance logs a line every 10% instead
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as progress:
        yield Bar(progress, progress.add_task(description, total=total, completed=start, stats=""))


def stdout_console() -> Console:
    """Tables are a command's output: stdout, and wide enough not to wrap when piped to a file."""
    out = Console()
    return out if out.is_terminal else Console(width=200)
