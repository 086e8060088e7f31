"""MaskGIT against AR: generation FD and token-sampling time against the number of decoding steps.

Usage:
    python scripts/maskgit_steps.py MODEL [MODEL ...] [--steps 1 2 4 8 12 16] [--n 10000] [--repeats 5]
                                    [--out results/maskgit] [--time-only]
    (MODEL may be LABEL=MODEL: the row's name; --repeats 0 measures the FDs only, --time-only the times only,
    so that times can be taken on an otherwise idle machine)

Each MODEL is a folder (or shipped name) with an AR prior and, where it has one, a MaskGIT prior (a model with
only an AR prior gives its AR row: a point of the equal-quality table). For each model, in one process:
the features of the Fashion-MNIST test images (or --data) in the shipped feature net, then for the AR prior and
for MaskGIT at every S in --steps (capped at T): generation FD of --n samples (seed 0; the same seed for every
row), and token-sampling time per image at batch 1 and 64 (median of --repeats after a warm-up; the samplers of
one model timed in turns, so a load that changes during the run reaches them alike). Results are merged into
OUT/steps.json (a row per model and sampler; a model measured again replaces its rows), and OUT/steps.md,
OUT/fd_vs_steps.png and OUT/fd_vs_time.png are drawn from all rows. The thread count is what OMP_NUM_THREADS
says; the CPU is recorded.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from comparison.plots import scatter_png  # noqa: E402

from tokenizer_cli.benchmark import time_generate  # noqa: E402
from tokenizer_cli.classifier import feature_net_for, load_feature_net  # noqa: E402
from tokenizer_cli.datasets import load_images  # noqa: E402
from tokenizer_cli.fd import extract_features, features_fd, generated_images  # noqa: E402
from tokenizer_cli.pipeline import load_pipeline  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return f"{cpu_name()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}"


def measure_model(label: str, model: str, steps: list[int], n: int, repeats: int, data: str,
                  known: list[dict] | None = None, choice_temperature: float | None = None,
                  temperature: float | None = None) -> list[dict]:
    """FD and times of every sampler of one model; with `known` (rows measured before: --time-only), their FDs
    are kept and only the times measured."""
    dev = torch.device("cpu")
    pipe = load_pipeline(model, dev)
    tok = pipe.tokenizer
    T = tok.tokens_per_image
    net, _ = load_feature_net(feature_net_for(tok.cfg.image_size, tok.cfg.channels), dev)
    real = extract_features(net, load_images(data, "test", tok.cfg.image_size, tok.cfg.channels, n), 500, dev)
    extra = {} if choice_temperature is None else {"choice_temperature": choice_temperature}
    note = "" if choice_temperature is None else f" ct={choice_temperature:g}"
    if temperature is not None:
        extra["temperature"] = temperature
        note += f" t={temperature:g}"
    samplers = [("AR", pipe.prior, {})] + ([] if pipe.maskgit_prior is None else [
        (f"MaskGIT S={s}{note}", pipe.maskgit_prior, {"steps": s, **extra}) for s in sorted({min(s, T) for s in steps})])
    rows = []
    for name, prior, options in samplers:
        kept = next((r for r in known or [] if r["sampler"] == name and r.get("data") == data
                     and r.get("samples") == len(real)), None)  # measured the same way, else measured again
        if kept is not None:
            rows.append(kept)
            continue
        t0 = time.perf_counter()
        gen = extract_features(net, generated_images(prior, tok, len(real), seed=0, device=dev, **options), 500, dev)
        fd = features_fd(real, gen)
        print(f"{label} {name}: generation FD {fd:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        rows.append({"label": label, "model": model, "tokens": T, "vocab": tok.vocab_size, "sampler": name,
                     "quantizer": tok.cfg.quantizer.kind, "data": data,
                     "steps": options.get("steps"), "choice_temperature": options.get("choice_temperature"),
                     "temperature": options.get("temperature"),
                     "generation_fd": fd, "samples": len(gen)})
    if repeats == 0:
        return rows
    classes = pipe.prior.cfg.num_classes
    for batch in (1, 64):  # timed in turns: every sampler once per round, the median over rounds
        labels = {"labels": torch.arange(batch) % classes} if classes else {}
        times: dict[str, list[float]] = {r["sampler"]: [] for r in rows}
        for _ in range(repeats):  # time_generate warms each up before it times it
            for name, prior, options in samplers:
                times[name].append(time_generate(prior, batch, 1, **options, **labels) / batch)
        for r in rows:
            ts = sorted(times[r["sampler"]])
            r[f"ms_per_image_b{batch}"] = ts[len(ts) // 2] * 1000
            r["timed_on"] = machine()
    return rows


def write_report(out: Path, rows: list[dict], meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "steps.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    timed_on = sorted({r["timed_on"] for r in rows if r.get("timed_on")})
    lines = [f"# MaskGIT steps against AR (times: {'; '.join(timed_on) or 'not measured'})", "",
             "Generation FD of as many samples as test images (seed 0) in the shipped feature net; token-sampling "
             "time per image, median of the runs, samplers of a model timed in turns. Speed-up: the model's AR "
             "time over this sampler's.", "",
             "| model | T | sampler | gen FD | FD vs AR | ms/img b=1 | speed-up b=1 | ms/img b=64 | speed-up b=64 |",
             "|---|---|---|---|---|---|---|---|---|"]
    def ms(r: dict, b: int, spec: str) -> str:
        v = r.get(f"ms_per_image_b{b}")
        return "-" if v is None else format(v, spec)

    def up(ref: dict, r: dict, b: int) -> str:
        k = f"ms_per_image_b{b}"
        return "-" if r.get(k) is None or ref.get(k) is None else f"{ref[k] / r[k]:.1f}x"

    for r in rows:
        ar = next(a for a in rows if a["label"] == r["label"] and a["sampler"] == "AR")
        lines.append(f"| {r['label']} | {r['tokens']} | {r['sampler']} | {r['generation_fd']:.1f} | "
                     f"{r['generation_fd'] / ar['generation_fd'] - 1:+.0%} | {ms(r, 1, '.2f')} | {up(ar, r, 1)} | "
                     f"{ms(r, 64, '.3f')} | {up(ar, r, 64)} |")
    timed = [r for r in rows if r.get("ms_per_image_b1") is not None]
    lines += ["", "## Equal quality: the fastest model and sampler at or under each model's AR generation FD", "",
              "| reference (AR) | its gen FD | fastest that reaches it | its gen FD | ms/img b=1 | speed-up b=1 | "
              "fastest at b=64 | ms/img b=64 | speed-up b=64 |", "|---|---|---|---|---|---|---|---|---|"]
    for ref in (r for r in timed if r["sampler"] == "AR"):
        ok = [r for r in timed if r["generation_fd"] <= ref["generation_fd"]]
        b1 = min(ok, key=lambda r: r["ms_per_image_b1"])
        b64 = min(ok, key=lambda r: r["ms_per_image_b64"])
        lines.append(f"| {ref['label']} | {ref['generation_fd']:.1f} | {b1['label']} {b1['sampler']} | "
                     f"{b1['generation_fd']:.1f} | {ms(b1, 1, '.2f')} | {up(ref, b1, 1)} | "
                     f"{b64['label']} {b64['sampler']} | {ms(b64, 64, '.3f')} | {up(ref, b64, 64)} |")
    (out / "steps.md").write_text("\n".join(lines) + "\n")
    kinds = {}  # a colour per model, from the plot's palette keys; the legend names the models
    palette = ["vq", "fsq", "mvq", "mvq-joint", "vqplain"]
    for r in rows:
        kinds.setdefault(r["label"], palette[len(kinds) % len(palette)])
    legend = {key: label for label, key in kinds.items()}

    def short(r: dict) -> str:
        return f"{r['label']} {'AR' if r['steps'] is None else r['steps']}"

    steps_pts = [{"quantizer": kinds[r["label"]], "x": r["steps"] or r["tokens"], "y": r["generation_fd"],
                  "label": short(r)} for r in rows]
    scatter_png(out / "fd_vs_steps.png", steps_pts, "decoding passes (MaskGIT: S; AR: T, one per token)",
                "generation FD", "Generation FD against decoding passes", log_x=True, legend=legend)
    time_pts = [{"quantizer": kinds[r["label"]], "x": r["ms_per_image_b1"], "y": r["generation_fd"],
                 "label": short(r)} for r in timed]
    scatter_png(out / "fd_vs_time.png", time_pts, "ms per image at batch 1 (token sampling)", "generation FD",
                "Generation FD against sampling time", log_x=True, legend=legend)
    print(f"wrote {out / 'steps.md'}, steps.json, fd_vs_steps.png, fd_vs_time.png")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model folders or shipped names; LABEL=MODEL names a row")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--out", type=Path, default=Path("results/maskgit"))
    ap.add_argument("--choice-temperature", type=float, default=None, help="MaskGIT rows: this instead of the default")
    ap.add_argument("--temperature", type=float, default=None, help="MaskGIT rows: sampling temperature (default 1)")
    ap.add_argument("--time-only", action="store_true", help="keep the FDs of OUT/steps.json, measure the times")
    a = ap.parse_args(argv)
    specs = []
    for spec in a.models:
        label, _, model = spec.rpartition("=")
        specs.append((label or model, model))
    labels = [label for label, _ in specs]
    if len(set(labels)) < len(labels):
        raise SystemExit(f"two models have the same label ({', '.join(sorted(set(x for x in labels if labels.count(x) > 1)))}): "
                         "name them LABEL=MODEL")
    for label, model in specs:  # every model checked before anything is measured
        pipe = load_pipeline(model, torch.device("cpu"))
        if pipe.prior is None:
            raise SystemExit(f"{model}: needs an AR prior, the baseline of its rows (it has: "
                             f"{', '.join(pipe.priors) or 'none'})")
    rows = []
    if (a.out / "steps.json").is_file():
        rows = json.loads((a.out / "steps.json").read_text()).get("rows", [])
    meta = {"command": "python scripts/maskgit_steps.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    for label, model in specs:
        known = [r for r in rows if r["label"] == label] if a.time_only else None
        rows = [r for r in rows if r["label"] != label] + measure_model(label, model, a.steps, a.n, a.repeats, a.data,
                                                                        known, a.choice_temperature, a.temperature)
        write_report(a.out, rows, meta)  # after each model: a failure later loses nothing measured
    return 0


if __name__ == "__main__":
    sys.exit(main())
