"""Markdown table of the shipped models' measured metrics, read from their config.json files.

Usage: python scripts/shipped_table.py   (prints to stdout; the README's table is its output)
"""

from __future__ import annotations

from tokenizer_cli.config import EvalResult, ReconstructionMetrics, TokenizerConfig
from tokenizer_cli.hub import read_config, shipped_models, shipped_root


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def shape_of(tok: TokenizerConfig) -> str:
    return f"{tok.image_size}px " + ("grey" if tok.channels == 1 else "RGB")


def main() -> None:
    """One table per image shape: FD values use that shape's feature net and compare only within it."""
    shape = {n: shape_of(read_config(shipped_root() / n).tokenizer) for n in shipped_models()}
    for i, s in enumerate(sorted(set(shape.values()))):
        if i:
            print()
        table([n for n in shape if shape[n] == s])


def table(names: list[str]) -> None:
    print("| model | quantizer | T | prior vocabulary | test MSE | PSNR dB | tokens used | recon FD | gen FD |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        cfg = read_config(shipped_root() / name)
        tok, m, ev = cfg.tokenizer, cfg.metrics or ReconstructionMetrics(), cfg.eval or EvalResult()
        q = tok.quantizer
        print(f"| {name} | {q.describe()} | {tok.tokens} | {q.vocab_size} | {fmt(m.mse, '.4f')} | "
              f"{fmt(m.psnr, '.2f')} | {m.tokens_used if m.tokens_used is not None else '-'}/{q.vocab_size} | "
              f"{fmt(ev.recon_fd, '.2f')} | {fmt(ev.generation_fd, '.2f')} |")


if __name__ == "__main__":
    main()
