"""The report of the comparison: one row per finished run (results.json) and the tables of results.md (mean ± std
over seeds; MVQ against VQ at the same K and against VQ/FSQ at the same vocabulary; sampling time)."""

from __future__ import annotations

import statistics
from pathlib import Path

from .plan import FASHION, MASKED, Spec, comparisons
from .runs import Settings, eval_done, read_json, run_dir


def collect(st: Settings, runs: list[tuple[Spec, int]]) -> tuple[list[dict], list[str]]:
    bench = read_json(st.out / "benchmark.json") or {}
    timing = {str(Path(r["model"])): r for r in bench.get("rows", [])}
    rows, missing = [], []
    for spec, seed in runs:
        d = run_dir(st, spec, seed)
        ev = read_json(d / "eval.json")
        if not ev or not eval_done(st, d):
            missing.append(f"{spec.name}-s{seed}" + ("" if d.exists() else " (not started)"))
            continue
        t = timing.get(str(d), {})
        rows.append({
            "name": spec.name, "run": f"{spec.name}-s{seed}", "quantizer": spec.quantizer, "K": spec.K, "g": spec.g,
            "levels": list(spec.levels) if spec.levels else None, "layout": spec.layout, "T": spec.tokens,
            "vocab": spec.vocab, "seed": seed, "group": spec.group,
            "mse": ev.get("mse"), "psnr": ev.get("psnr"), "ssim": ev.get("ssim"), "recon_fd": ev.get("recon_fd"),
            "generation_fd": ev.get("generation_fd"), "tokens_used": ev.get("tokens_used"),
            "perplexity": ev.get("perplexity"), "eval_images": ev.get("images"), "feature_net": ev.get("feature_net"),
            "fd_floor": ev.get("fd_train_vs_test"),
            "ms_per_image_b64": t.get("ms_per_image_b64"), "ms_per_image_b1": t.get("ms_per_image_b1"),
            "folder": str(d),
        })
    return rows, missing


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def fmt(values: list[float | None], spec: str) -> str:
    m, s = mean_std(values)
    if m is None:
        return "-"
    return format(m, spec) + ("" if s is None else " ± " + format(s, spec))


def by_name(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["name"], []).append(r)
    return out


def rel_change(m_rows: list[dict], b_rows: list[dict], key: str) -> str:
    """Relative change of MVQ against the baseline in % (of the means; ± the std of the per-seed changes)."""
    m, _ = mean_std([r[key] for r in m_rows])
    b, _ = mean_std([r[key] for r in b_rows])
    if m is None or b is None or b == 0:
        return "-"
    text = f"{100 * (m - b) / b:+.1f}%"
    base = {r["seed"]: r[key] for r in b_rows if r[key]}
    paired = [100 * (r[key] - base[r["seed"]]) / base[r["seed"]] for r in m_rows
              if r[key] is not None and r["seed"] in base]
    if len(paired) > 1:
        text += f" (per seed {statistics.fmean(paired):+.1f} ± {statistics.stdev(paired):.1f}%)"
    return text


AXES = (("same K", "MVQ vs VQ with the same number of code vectors K (the paper's axis)"),
        ("same vocabulary", "MVQ vs VQ and FSQ with the same token vocabulary K*M (the fair axis for the prior)"))


def write_markdown(path: Path, rows: list[dict], specs: list[Spec], settings: dict, missing: list[str]) -> None:
    groups = by_name(rows)
    lines = settings_lines(settings) + all_runs_lines(groups, specs)
    for axis, title in AXES:
        lines += axis_lines(axis, title, groups, specs)
    lines += sampling_time_lines(groups, specs) + equal_quality_lines(groups, specs) + footer_lines(missing)
    path.write_text("\n".join(lines))


def res_blocks_text(settings: dict) -> str:
    blocks = settings.get("res_blocks", 1)  # results of before the option: mvq's default, 1
    return "" if blocks == 1 else f", {blocks} residual blocks a resolution"


def settings_lines(settings: dict) -> list[str]:
    """The title and the paragraph of the settings (with a note when FD is measured with another data's net)."""
    lines = [f"# VQ vs FSQ vs MVQ on {settings['data']}", ""]
    lines.append(f"Tokenizers: {settings['steps']} steps, batch {settings['batch_size']}, base channels "
                 f"{settings['base_channels']}{res_blocks_text(settings)}; priors: 4 layers, 4 heads, width 128, {settings['prior_steps']} steps; "
                 f"seeds {settings['seeds']}; eval on {settings['eval_images'] or '-'} images of "
                 f"{settings['eval_data']} (FD in the features of `{settings['feature_nets'] or '-'}`, real-vs-real floor "
                 f"{settings['fd_floor'] or '-'}); "
                 f"sampling time on {settings.get('bench_device') or '-'} "
                 f"({settings.get('bench_threads') or '-'} threads). Made by `{settings['command']}`.")
    if settings["data"] != FASHION and "fd-fmnist-classifier" in (settings["feature_nets"] or ""):
        lines += ["", "Note: FD is measured with a Fashion-MNIST classifier (images turned to grey 28x28); its FD "
                  "values compare the models with each other but are not a calibrated distance for this data. Pass "
                  "--feature-net for a classifier trained on this data."]
    return lines


def all_runs_lines(groups: dict[str, list[dict]], specs: list[Spec]) -> list[str]:
    """The table of every configuration with a finished run: mean ± std over seeds."""
    lines = ["", "## All runs (mean ± std over seeds)", "",
             "| run | quantizer | T | vocabulary | seeds | test MSE | PSNR dB | SSIM | recon FD | gen FD | tokens used "
             "| ms/img b=64 | ms/img b=1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for spec in specs:
        rs = groups.get(spec.name)
        if not rs:
            continue
        col = lambda k: [r[k] for r in rs]  # noqa: E731
        lines.append(f"| {spec.name} | {spec.describe} | {spec.tokens}{' (grid)' if spec.layout == 'grid' else ''} | "
                     f"{spec.vocab} | {len(rs)} | {fmt(col('mse'), '.4f')} | {fmt(col('psnr'), '.2f')} | "
                     f"{fmt(col('ssim'), '.3f')} | {fmt(col('recon_fd'), '.3g')} | {fmt(col('generation_fd'), '.3g')} | "
                     f"{fmt(col('tokens_used'), '.0f')}/{spec.vocab} | {fmt(col('ms_per_image_b64'), '.3g')} | "
                     f"{fmt(col('ms_per_image_b1'), '.3g')} |")
    return lines


def axis_lines(axis: str, title: str, groups: dict[str, list[dict]], specs: list[Spec]) -> list[str]:
    """The table of one axis of comparisons(): MVQ against each baseline, relative change in %."""
    lines = ["", f"## {title}", "", "Change = (MVQ - baseline) / baseline: negative is better for MVQ (FD, MSE).", "",
             "| T | MVQ | baseline | vocab MVQ / baseline | gen FD MVQ | gen FD baseline | gen FD change "
             "| recon FD MVQ | recon FD baseline | recon FD change | MSE change |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    pairs = [(m, b) for ax, m, b in comparisons(specs) if ax == axis and m.name in groups and b.name in groups]
    if not pairs:
        lines.append("| (no pair with both runs complete yet) |  |  |  |  |  |  |  |  |  |  |")
    for m, b in pairs:
        mr, br = groups[m.name], groups[b.name]
        lines.append(f"| {m.tokens} | {m.describe} | {b.describe} | {m.vocab} / {b.vocab} | "
                     f"{fmt([r['generation_fd'] for r in mr], '.3g')} | {fmt([r['generation_fd'] for r in br], '.3g')} | "
                     f"{rel_change(mr, br, 'generation_fd')} | {fmt([r['recon_fd'] for r in mr], '.3g')} | "
                     f"{fmt([r['recon_fd'] for r in br], '.3g')} | {rel_change(mr, br, 'recon_fd')} | "
                     f"{rel_change(mr, br, 'mse')} |")
    return lines


def long_baselines(groups: dict[str, list[dict]], specs: list[Spec]) -> list[Spec]:
    """The long-sequence VQ baselines with a finished run."""
    return [s for s in specs if s.group == "long" and s.name in groups]


def sampling_time_lines(groups: dict[str, list[dict]], specs: list[Spec]) -> list[str]:
    """MVQ (no ablations) against each long-sequence baseline: sampling time at batch 64 and the speed-up."""
    long = long_baselines(groups, specs)
    short = [s for s in specs if s.quantizer in MASKED and s.group != "ablation" and s.name in groups]
    if not (long and short):
        return []
    lines = ["", "## Sampling time: MVQ at T tokens vs the long-sequence VQ baselines (batch 64)", "",
             "| MVQ | T | gen FD | ms/img | baseline | T' | gen FD | ms/img | speed-up | baseline at least as good |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in short:
        for b in long:
            mr, br = groups[m.name], groups[b.name]
            mt, _ = mean_std([r["ms_per_image_b64"] for r in mr])
            bt, _ = mean_std([r["ms_per_image_b64"] for r in br])
            mf, _ = mean_std([r["generation_fd"] for r in mr])
            bf, _ = mean_std([r["generation_fd"] for r in br])
            speed = f"{bt / mt:.1f}x" if mt and bt else "-"
            good = "-" if mf is None or bf is None else ("yes" if bf <= mf else "no")
            lines.append(f"| {m.describe} | {m.tokens} | {fmt([r['generation_fd'] for r in mr], '.3g')} | "
                         f"{fmt([r['ms_per_image_b64'] for r in mr], '.3g')} | {b.describe} | {b.tokens} | "
                         f"{fmt([r['generation_fd'] for r in br], '.3g')} | "
                         f"{fmt([r['ms_per_image_b64'] for r in br], '.3g')} | {speed} | {good} |")
    return lines


def equal_quality_lines(groups: dict[str, list[dict]], specs: list[Spec]) -> list[str]:
    """For each long-sequence baseline, the fastest shorter run at least as good (generation FD) and its speed-up."""
    long = long_baselines(groups, specs)
    if not long:
        return []
    means = {name: {k: mean_std([r[k] for r in rs])[0] for k in ("generation_fd", "ms_per_image_b64", "ms_per_image_b1")}
             for name, rs in groups.items()}
    lines = ["", "## Speed-up at equal quality (token sampling, batch 64 and 1)", "",
             "The fastest run whose generation FD is at most the baseline's; speed-up = baseline time / its time.", "",
             "| baseline | T | gen FD | fastest run as good | T | gen FD | speed-up b=64 | speed-up b=1 |",
             "|---|---|---|---|---|---|---|---|"]
    by_spec = {s.name: s for s in specs}
    for b in long:
        lines.append(equal_quality_row(b, means, by_spec))
    return lines


def equal_quality_row(b: Spec, means: dict[str, dict], by_spec: dict[str, Spec]) -> str:
    """One row of the equal-quality table: baseline b and the fastest run with fewer tokens at least as good."""
    mb = means[b.name]
    rivals = [n for n, m in means.items() if n != b.name and by_spec.get(n) and by_spec[n].tokens < b.tokens
              and m["generation_fd"] is not None and mb["generation_fd"] is not None
              and m["generation_fd"] <= mb["generation_fd"] and m["ms_per_image_b64"]]
    best = min(rivals, key=lambda n: means[n]["ms_per_image_b64"], default=None)
    if best is None:
        return f"| {b.describe} | {b.tokens} | {fmt([mb['generation_fd']], '.3g')} | none | - | - | - | - |"
    m = means[best]
    up64 = f"{mb['ms_per_image_b64'] / m['ms_per_image_b64']:.1f}x" if mb["ms_per_image_b64"] else "-"
    up1 = f"{mb['ms_per_image_b1'] / m['ms_per_image_b1']:.1f}x" if mb["ms_per_image_b1"] and m["ms_per_image_b1"] else "-"
    return (f"| {b.describe} | {b.tokens} | {fmt([mb['generation_fd']], '.3g')} | {by_spec[best].describe} "
            f"| {by_spec[best].tokens} | {fmt([m['generation_fd']], '.3g')} | {up64} | {up1} |")


def footer_lines(missing: list[str]) -> list[str]:
    """The runs left out (no eval yet) and where the plots and rows are."""
    started = [m for m in missing if not m.endswith(" (not started)")]
    not_started = [m.removesuffix(" (not started)") for m in missing if m.endswith(" (not started)")]
    lines = ["", f"Not complete (no eval yet, left out above): {', '.join(started)}."] if started else []
    if not_started:
        lines += ["", f"Asked for but not run (these seeds were never started): {', '.join(not_started)}."]
    return lines + ["", "Plots: fd_vs_tokens.png, fd_vs_time.png. Rows: results.json.", ""]
