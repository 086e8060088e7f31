"""The plots of the comparison, drawn with Pillow only: generation FD against tokens per image and against
sampling time per image (one marker shape and colour per quantizer, error bars: std over seeds)."""

from __future__ import annotations

import math
from pathlib import Path

from .plan import MASKED, Spec
from .report import by_name, mean_std

COLOURS = {"vq": (31, 119, 180), "fsq": (44, 160, 44), "mvq": (214, 39, 40), "mvq-joint": (255, 127, 14),
           "vqplain": (148, 103, 189)}
LABELS = {"vq": "VQ", "fsq": "FSQ", "mvq": "MVQ sampled masks", "mvq-joint": "MVQ joint tokens",
          "vqplain": "VQ without restarts"}


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable with FreeType (Pillow >= 10.1)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def draw_marker(d, x: float, y: float, quantizer: str, r: int = 6) -> None:
    c = COLOURS.get(quantizer, (90, 90, 90))
    if quantizer == "fsq":
        d.rectangle([x - r, y - r, x + r, y + r], fill=c, outline=(0, 0, 0))
    elif quantizer in MASKED:
        d.polygon([(x, y - r - 1), (x - r - 1, y + r), (x + r + 1, y + r)], fill=c, outline=(0, 0, 0))
    else:
        d.ellipse([x - r, y - r, x + r, y + r], fill=c, outline=(0, 0, 0))


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(k * mag for k in (1, 2, 2.5, 5, 10) if k * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], first
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 12))
        v += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks of a log axis (only powers of ten when there are many; 1..9 or linear ones when few)."""
    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    for mults in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [float(f"{k * 10.0**e:.12g}") for e in decades for k in mults if lo <= k * 10.0**e <= hi]
        if len(ticks) > 8:
            ticks = [t for t in ticks if f"{t:e}".startswith("1.")]
        if len(ticks) >= 3:
            return ticks
    return [t for t in nice_ticks(lo, hi, 4) if t > 0]


def tick_label(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


MARGINS = (90, 30, 50, 70)  # left, right, top, bottom


def scatter_png(path: Path, points: list[dict], x_label: str, y_label: str, title: str, log_x: bool = False,
                x_ticks: list[float] | None = None, size: tuple[int, int] = (900, 600),
                legend: dict[str, str] | None = None) -> None:
    """A scatter plot: points are dicts with quantizer, x, y, yerr (or None) and label; one marker per quantizer,
    named in the legend by `legend` (by default LABELS)."""
    from PIL import Image, ImageDraw

    w, h = size
    left, right, top, bottom = MARGINS
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    font, small, big = _font(14), _font(11), _font(16)
    d.text((w / 2, 12), title, fill=(0, 0, 0), font=big, anchor="mt")
    box = (left, top, w - right, h - bottom)
    pts = [p for p in points if p.get("x") is not None and p.get("y") is not None and (not log_x or p["x"] > 0)]
    if not pts:
        x0, y0, x1, y1 = box
        d.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
        d.text(((x0 + x1) / 2, (y0 + y1) / 2), "no data yet", fill=(0, 0, 0), font=font, anchor="mm")
        img.save(path, format="PNG")
        return
    tx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    (xlo, xhi), (ylo, yhi), yt = axis_ranges(pts, tx, log_x)
    x0, y0, x1, y1 = box
    px = lambda v: x0 + (tx(v) - xlo) / (xhi - xlo) * (x1 - x0)  # noqa: E731
    py = lambda v: y1 - (v - ylo) / (yhi - ylo) * (y1 - y0)  # noqa: E731
    xt = x_ticks if x_ticks is not None else (log_ticks(10**xlo, 10**xhi) if log_x else nice_ticks(xlo, xhi))
    draw_grid(d, box, xt, yt, px, py, log_x, font)
    draw_axis_labels(img, d, box, h, x_label, y_label, font)
    draw_points(d, pts, px, py, small)
    draw_legend(d, box, pts, font, legend or LABELS, [(px(p["x"]), py(p["y"])) for p in pts])
    img.save(path, format="PNG")


def axis_ranges(pts: list[dict], tx, log_x: bool) -> tuple[tuple[float, float], tuple[float, float], list[float]]:
    """The x range (in tx units) and y range of the plot, with some padding, and the y ticks."""
    xs = [tx(p["x"]) for p in pts]
    ys_lo = [p["y"] - (p.get("yerr") or 0) for p in pts]
    ys_hi = [p["y"] + (p.get("yerr") or 0) for p in pts]
    xlo, xhi = min(xs), max(xs)
    if log_x and xhi - xlo < 0.5:  # at least half a decade, so close points do not sit on the frame
        mid = (xlo + xhi) / 2
        xlo, xhi = mid - 0.25, mid + 0.25
    pad = (xhi - xlo) * 0.08 or max(abs(xlo) * 0.1, 1.0)
    xlo, xhi = xlo - pad, xhi + pad
    ylo, yhi = min(ys_lo), max(ys_hi)
    ypad = (yhi - ylo) * 0.08 or max(abs(ylo) * 0.1, 1.0)
    ylo, yhi = ylo - ypad, yhi + ypad
    if min(ys_lo) >= 0 and ylo < 0:
        ylo = 0.0
    yt = nice_ticks(ylo, yhi)
    ylo, yhi = min(ylo, yt[0]), max(yhi, yt[-1])
    return (xlo, xhi), (ylo, yhi), yt


def draw_grid(d, box: tuple, xt: list[float], yt: list[float], px, py, log_x: bool, font) -> None:
    """Grid lines, ticks and tick labels of both axes, and the frame."""
    x0, y0, x1, y1 = box
    for v in xt:
        if v <= 0 and log_x:
            continue
        X = px(v)
        if x0 <= X <= x1:
            d.line([X, y0, X, y1], fill=(228, 228, 228))
            d.line([X, y1, X, y1 + 5], fill=(0, 0, 0))
            d.text((X, y1 + 8), tick_label(v), fill=(0, 0, 0), font=font, anchor="mt")
    for v in yt:
        Y = py(v)
        if y0 - 0.5 <= Y <= y1 + 0.5:
            d.line([x0, Y, x1, Y], fill=(228, 228, 228))
            d.line([x0 - 5, Y, x0, Y], fill=(0, 0, 0))
            d.text((x0 - 8, Y), tick_label(v), fill=(0, 0, 0), font=font, anchor="rm")
    d.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))


def draw_axis_labels(img, d, box: tuple, h: int, x_label: str, y_label: str, font) -> None:
    """The axis labels (the y label drawn on its own image and turned)."""
    from PIL import Image, ImageDraw

    x0, y0, x1, y1 = box
    d.text(((x0 + x1) / 2, h - 18), x_label, fill=(0, 0, 0), font=font, anchor="mb")
    lw = int(d.textlength(y_label, font=font)) + 8
    label = Image.new("RGBA", (lw, 22), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((lw / 2, 11), y_label, fill=(0, 0, 0, 255), font=font, anchor="mm")
    label = label.rotate(90, expand=True)
    img.paste(label, (8, int((y0 + y1) / 2 - label.height / 2)), label)


def draw_points(d, pts: list[dict], px, py, small) -> None:
    """Error bars, markers and labels of the points."""
    for p in pts:
        X, Y = px(p["x"]) + p.get("dx", 0), py(p["y"])
        if p.get("yerr"):
            c = COLOURS.get(p["quantizer"], (90, 90, 90))
            d.line([X, py(p["y"] - p["yerr"]), X, py(p["y"] + p["yerr"])], fill=c, width=2)
        draw_marker(d, X, Y, p["quantizer"])
        if p.get("label"):
            d.text((X + 9, Y), p["label"], fill=(60, 60, 60), font=small, anchor="lm")


def draw_legend(d, box: tuple, pts: list[dict], font, names: dict[str, str] = LABELS,
                at: list[tuple[float, float]] = ()) -> None:
    """One marker and name per quantizer present, in the corner of the plot that hides fewest of the points
    drawn at pixels `at` (the top right where none is)."""
    x0, y0, x1, y1 = box
    kinds = [k for k in COLOURS if any(p["quantizer"] == k for p in pts)]
    width = int(max((d.textlength(names[k], font=font) for k in kinds), default=60)) + 44  # the longest name
    height = 22 * len(kinds) + 4

    def hidden(corner: tuple[float, float]) -> int:
        cx, cy = corner
        return sum(cx - 12 <= x <= cx + width + 12 and cy - 12 <= y <= cy + height + 12 for x, y in at)

    corners = [(x1 - 8 - width, y0 + 4), (x0 + 8, y0 + 4), (x1 - 8 - width, y1 - 4 - height), (x0 + 8, y1 - 4 - height)]
    left, top = min(corners, key=hidden)  # min keeps the first (top right) among equals
    lx, ly = left + 8, top + 6
    d.rectangle([left, top, left + width, top + height], fill=(255, 255, 255), outline=(150, 150, 150))
    for i, k in enumerate(kinds):
        draw_marker(d, lx + 6, ly + 8 + 22 * i, k)
        d.text((lx + 20, ly + 8 + 22 * i), names[k], fill=(0, 0, 0), font=font, anchor="lm")


def plot_points(rows: list[dict], specs: list[Spec], x_key: str) -> list[dict]:
    """One point per configuration: mean over seeds (error bar: std of generation FD)."""
    groups = by_name(rows)
    pts = []
    for spec in specs:
        rs = groups.get(spec.name)
        if not rs:
            continue
        y, yerr = mean_std([r["generation_fd"] for r in rs])
        x = spec.tokens if x_key == "T" else mean_std([r[x_key] for r in rs])[0]
        label = spec.short if x_key == "T" else f"T{spec.tokens}: {spec.short}"
        pts.append({"quantizer": spec.quantizer, "x": x, "y": y, "yerr": yerr, "label": label, "T": spec.tokens})
    return pts


def write_plots(out: Path, rows: list[dict], specs: list[Spec]) -> None:
    pts = plot_points(rows, specs, "T")
    by_t: dict[int, list[dict]] = {}
    for p in pts:
        by_t.setdefault(p["T"], []).append(p)
    for group in by_t.values():  # spread the configurations that share T sideways, so they do not overlap
        group.sort(key=lambda p: (p["quantizer"], p["label"]))
        for i, p in enumerate(group):
            p["dx"] = (i - (len(group) - 1) / 2) * 9
    scatter_png(out / "fd_vs_tokens.png", pts, "tokens per image T (log scale)", "generation FD (lower is better)",
                "Generation FD against sequence length", log_x=True, x_ticks=sorted({s.tokens for s in specs}))
    scatter_png(out / "fd_vs_time.png", plot_points(rows, specs, "ms_per_image_b64"),
                "prior sampling time, ms per image at batch 64 (log scale)", "generation FD (lower is better)",
                "Generation FD against sampling time", log_x=True)
