"""Model cards (README.md of a model folder), written from config.json alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import PRIOR_KINDS, to_dict

if TYPE_CHECKING:
    from .config import ModelConfig


def _table(metrics: dict) -> list[str]:
    rows = ["| metric | value |", "|---|---|"]
    for key, value in metrics.items():
        if isinstance(value, (int, float, str)):
            rows.append(f"| {key} | {value:.5g} |" if isinstance(value, float) else f"| {key} | {value} |")
    return rows


def _priors_line(cfg: ModelConfig) -> str:
    """Which priors the folder holds, and how `mvq sample` picks one."""
    shapes = []
    for name in cfg.prior_kinds:
        kind, p = PRIOR_KINDS[name], getattr(cfg, PRIOR_KINDS[name].key)
        shapes.append(f"{'an' if name == 'ar' else 'a'} {kind.title} (`{kind.file}`: {p.n_layer} layers, width "
                      f"{p.n_embd}" + (f", {p.num_classes} classes" if p.num_classes else "")
                      + (", with a mask head" if p.num_masks else "") + ")")
    if not shapes:
        return "Priors: none (train one with `mvq train prior`)."
    return ("Priors: " + " and ".join(shapes) + "; sample with `mvq sample --sampler "
            + "|".join(cfg.prior_kinds) + "`" + (" (default: ar)." if len(shapes) > 1 else "."))


def model_card(cfg: ModelConfig, name: str = "") -> str:
    tok, q = cfg.tokenizer, cfg.tokenizer.quantizer
    lines = [
        "---",
        "library_name: mvq",
        "tags: [image-tokenizer, vector-quantization, " + q.kind + "]",
        "license: mit",
        "---",
        f"# {name or 'mvq model'}",
        "",
        f"An mvq image tokenizer: {tok.image_size}x{tok.image_size}x{tok.channels} images <-> "
        f"{tok.tokens} tokens ({tok.layout} layout), quantizer {q.describe()}, vocabulary {q.vocab_size}."
        + (" Each token also carries a mask (the hypothesis of its code vector): `mvq encode` stores it, "
           "`mvq sample` draws it." if q.has_masks else ""),
        "",
        "Load it with `mvq encode --model <this folder or repo id> images/ tokens.npy`, or in Python with "
        "`tokenizer_cli.Pipeline.from_pretrained(...)`.",
        "",
        _priors_line(cfg),
    ]
    why = cfg.other.get("why")  # a maker's reasons for the design, config.json "why" (a string)
    if isinstance(why, str) and why.strip():
        lines += ["", "## Why this design", "", why.strip()]
    for record, title in ((cfg.metrics, "Tokenizer metrics"), (cfg.eval, "Evaluation (`mvq eval`)")):
        if record is not None:
            data = {k: v for k, v in to_dict(record).items() if v is not None}
            lines += ["", f"## {title}", "", f"Measured on {data.get('eval_data', 'held-out data')}:", ""]
            lines += _table({k: v for k, v in data.items() if k not in ("eval_data", "command")})
            if data.get("command"):
                lines += ["", "```", data["command"], "```"]
    for record, title in ((cfg.training, "Tokenizer training"), (cfg.prior_training, "AR prior training"),
                          (cfg.maskgit_prior_training, "MaskGIT prior training")):
        if record is not None:
            data = {k: v for k, v in to_dict(record).items() if v is not None}
            lines += ["", f"## {title}", ""]
            if data.get("command"):
                lines += ["```", data["command"], "```", ""]
            lines += [f"- {k}: {v}" for k, v in data.items() if k != "command"]
    return "\n".join(lines) + "\n"
