"""`mvq models`: the shipped defaults and the mvq models in the Hugging Face cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from ..hub import DEFAULT_MODEL, read_config, shipped_models, shipped_root
from .common import stdout_console

if TYPE_CHECKING:
    from ..config import ModelConfig


def _row(name: str, cfg: ModelConfig, where: str) -> list[str]:
    tok, q, m = cfg.tokenizer, cfg.tokenizer.quantizer, cfg.metrics
    psnr = f"{m.psnr:.2f}" if m is not None and m.psnr is not None else "-"
    return [name + (" (default)" if name == DEFAULT_MODEL else ""), q.describe(), str(tok.tokens), str(q.vocab_size),
            f"{tok.image_size}x{tok.image_size}x{tok.channels}", psnr, ", ".join(cfg.prior_kinds) or "none", where]


def models() -> None:
    """List models that load without a network: shipped defaults and cached Hub repos."""
    table = Table("model", "quantizer", "T", "vocabulary", "images", "PSNR dB (mean MSE)", "priors", "source")
    for name in shipped_models():
        table.add_row(*_row(name, read_config(shipped_root() / name), "shipped"))
    try:
        from huggingface_hub import scan_cache_dir

        for repo in scan_cache_dir().repos:
            for rev in repo.revisions:
                cfg_file = next((f for f in rev.files if f.file_name == "config.json"), None)
                if cfg_file is not None and (rev.snapshot_path / "tokenizer.safetensors").exists():
                    table.add_row(*_row(repo.repo_id, read_config(rev.snapshot_path), f"hub cache @{rev.commit_hash[:8]}"))
    except Exception:  # no cache yet, or an unreadable one: shipped models are still listed
        pass
    stdout_console().print(table)
