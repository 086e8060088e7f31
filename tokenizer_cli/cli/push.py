"""`mvq push`: upload a model folder to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cards import model_card
from ..files import atomic_write
from ..hub import REPO_ID, push_folder, read_config
from .common import console, fail


def push(
    folder: Annotated[Path, typer.Argument(help="Model folder (config.json, tokenizer.safetensors, ...).")],
    repo_id: Annotated[str, typer.Argument(help="Hub repo id owner/name.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo as private.")] = False,
    revision: Annotated[str | None, typer.Option("--revision", help="Branch to push to (created if missing).")] = None,
) -> None:
    """Upload a model folder (weights, config.json and a model card with its measured metrics)."""
    if not REPO_ID.match(repo_id) or "@" in repo_id:
        fail(f"{repo_id!r} is not a Hub repo id (owner/name)")
    cfg = read_config(folder)
    if not (folder / "tokenizer.safetensors").is_file():
        fail(f"{folder} has no tokenizer.safetensors")
    atomic_write(folder / "README.md", lambda p: Path(p).write_text(model_card(cfg, repo_id.split("/")[1])))
    try:
        url = push_folder(folder, repo_id, private=private, revision=revision)
    except Exception as err:  # network, auth, permissions: huggingface_hub says which
        fail(f"push to {repo_id} failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    console.print(f"pushed {folder} to {repo_id}" + (f"@{revision}" if revision else ""))
    typer.echo(url)
