"""`--help` listings: a flag takes no value, so it shows no type; an option with a value shows its type."""

import re

import pytest
import typer
from typer.testing import CliRunner

from tokenizer_cli.cli.app import app

# (command, flags it lists, an option with an int value)
LISTINGS = [
    ([], ["--help"], None),
    (["encode"], ["--skip-bad", "--overwrite", "--resume", "--help"], "--batch-size"),
    (["decode"], ["--overwrite", "--help"], "--batch-size"),
    (["sample"], ["--overwrite", "--help"], "--n"),
    (["train", "tokenizer"], ["--overwrite", "--resume", "--help"], "--steps"),
]


def help_text(command: list[str]) -> str:
    res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.parametrize("command, flags, int_option", LISTINGS, ids=[" ".join(c) or "mvq" for c, _, _ in LISTINGS])
def test_help_lists_flags_without_a_type(command, flags, int_option):
    text = help_text(command)
    assert "<bool>" not in text
    for flag in flags:  # the flag, then its help text at once: no type column between them
        assert re.search(rf"│ {flag}\s+[A-Z]", text), f"{flag} not listed as a bare flag:\n{text}"
    if int_option is not None:
        assert re.search(rf"│ {int_option}\s[^│]*<int", text), f"{int_option} lost its type:\n{text}"


def test_every_command_lists_its_flags_without_a_type():
    """The tree that `mvq` (main -> app()) and CliRunner both build with typer.main.get_command: each command and
    group in it, present or future, gives its flags (and its own --help) an empty type."""
    root = typer.main.get_command(app)

    def walk(command, ctx):
        yield command, ctx
        for name in getattr(command, "commands", {}):
            sub = command.commands[name]
            yield from walk(sub, sub.make_context(name, ["--help"], parent=ctx, resilient_parsing=True))

    commands = list(walk(root, root.make_context("mvq", ["--help"], resilient_parsing=True)))
    assert len(commands) >= 13  # mvq, its 10 commands and groups, train's 2
    for command, ctx in commands:
        flags = [p for p in command.get_params(ctx) if getattr(p, "is_flag", False)]
        assert flags, command.name  # --help at least
        assert all(p.display_type_rich(ctx) == "" for p in flags), command.name


def test_decode_help_names_pngs_as_decode_does():
    from tokenizer_cli.files import image_names

    assert f"(boot.png -> {image_names(['pics/boot.png'])[0]})" in help_text(["decode"])
