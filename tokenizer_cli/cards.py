"""Model cards (README.md of a model folder), written from config.json alone."""

from __future__ import annotations


from .config import tokenizer_config_of


def _table(metrics: dict) -> list[str]:
    rows = ["| metric | value |", "|---|---|"]
    for key, value in metrics.items():
        if isinstance(value, (int, float, str)):
            rows.append(f"| {key} | {value:.5g} |" if isinstance(value, float) else f"| {key} | {value} |")
    return rows


def model_card(cfg: dict, name: str = "") -> str:
    tok_cfg = tokenizer_config_of(cfg)
    tok, q = cfg["tokenizer"], tok_cfg.quantizer
    lines = [
        "---",
        "library_name: mvq",
        "tags: [image-tokenizer, vector-quantization, " + q.kind + "]",
        "license: mit",
        "---",
        f"# {name or 'mvq model'}",
        "",
        f"An mvq image tokenizer: {tok['image_size']}x{tok['image_size']}x{tok['channels']} images <-> "
        f"{tok['tokens']} tokens ({tok['layout']} layout), quantizer {q.describe()}, vocabulary {q.vocab_size}."
        + (" Each token also carries a mask (the hypothesis of its code vector): `mvq encode` stores it, "
           "`mvq sample` draws it." if q.has_masks else ""),
        "",
        "Load it with `mvq encode --model <this folder or repo id> images/ tokens.npy`.",
    ]
    for section, title in (("metrics", "Tokenizer metrics"), ("eval", "Evaluation (`mvq eval`)")):
        if cfg.get(section):
            data = cfg[section]
            lines += ["", f"## {title}", "", f"Measured on {data.get('eval_data', 'held-out data')}:", ""]
            lines += _table({k: v for k, v in data.items() if k not in ("eval_data", "command")})
            if data.get("command"):
                lines += ["", "```", data["command"], "```"]
    for key, title in (("training", "Tokenizer training"), ("prior_training", "Prior training")):
        if cfg.get(key):
            info = cfg[key]
            lines += ["", f"## {title}", ""]
            if info.get("command"):
                lines += ["```", info["command"], "```", ""]
            lines += [f"- {k}: {v}" for k, v in info.items() if k != "command"]
    return "\n".join(lines) + "\n"
