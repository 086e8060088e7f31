"""Build a square RGB image folder (default 64x64) from Debian's openclipart-png, for colour tokenizers.

Usage:
    apt-get install -y openclipart-png          # ~8,100 public-domain clip-art PNGs, /usr/share/openclipart/png
    python scripts/prepare_openclipart.py --out data/openclipart64 [--source DIR] [--size 64] [--limit N]
    mvq train tokenizer m --data data/openclipart64/train --image-size 64 --channels 3 ...
    mvq eval --model m --data data/openclipart64/test

Each picture is composited on white (transparency), cropped to its content (the bounding box of the
non-white pixels, plus a small margin; --no-crop keeps the whole canvas), padded to a square with white,
and resized with Lanczos to SIZE x SIZE. It goes to OUT/train or OUT/test by a hash of its path
relative to --source (about 90/10, the same on every machine and for every --limit). Exact duplicate
files (same bytes) are kept once, so no picture is both in train and test. Unreadable and blank files
are skipped and counted. OUT/manifest.json records the counts and the source of every output file.
The images are data, not code: do not commit them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

from PIL import Image, ImageChops, ImageOps

DEFAULT_SOURCES = ("/usr/share/openclipart/png", "/usr/share/openclipart")
TEST_PERCENT = 10


def split_of(rel: str) -> str:
    """'test' for about TEST_PERCENT % of names, else 'train'; depends only on the relative path."""
    h = int.from_bytes(hashlib.sha256(rel.encode("utf-8")).digest()[:8], "big")
    return "test" if h % 100 < TEST_PERCENT else "train"


def out_name(rel: str) -> str:
    """animals/birds/owl.png -> animals__birds__owl.png (flat, unique, readable)."""
    stem = rel[: -len(Path(rel).suffix)] if Path(rel).suffix else rel
    return stem.replace("/", "__").replace(" ", "_") + ".png"


def to_square(img: Image.Image, size: int, crop: bool = True, margin: float = 0.04) -> Image.Image | None:
    """RGB SIZE x SIZE picture on white, or None when nothing but white is left (blank)."""
    img = ImageOps.exif_transpose(img)
    if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit grey: scale to 8 bits before converting
        img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    elif img.mode == "F":
        img = img.convert("L")
    rgba = img.convert("RGBA")  # P with transparency, LA, L, CMYK, RGB: all end as RGBA
    rgba.thumbnail((16 * size, 16 * size), Image.Resampling.BOX)  # huge posters: minutes -> ms, same 64 px result
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    bbox = ImageChops.difference(rgb, Image.new("RGB", rgb.size, (255, 255, 255))).getbbox()
    if bbox is None:
        return None
    if crop:
        rgb = rgb.crop(bbox)
    w, h = rgb.size
    side = max(w, h)
    if crop:
        side = max(side + 2 * round(margin * side), 1)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(rgb, ((side - w) // 2, (side - h) // 2))
    return canvas.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)


def find_source(given: str | None) -> Path:
    candidates = [given] if given else list(DEFAULT_SOURCES)
    for c in candidates:
        p = Path(c)
        if p.is_dir() and any(p.rglob("*.png")):
            return p
    sys.exit(f"error: no PNG files under {' or '.join(candidates)} "
             "(install them with `apt-get install -y openclipart-png`, or pass --source DIR)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", help=f"folder of PNGs, searched recursively (default: {DEFAULT_SOURCES[0]})")
    ap.add_argument("--out", required=True, type=Path, help="output folder; gets train/, test/, manifest.json")
    ap.add_argument("--size", type=int, default=64, help="side of the square output images (default 64)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N source files (sorted by path)")
    ap.add_argument("--no-crop", action="store_true", help="keep the whole canvas instead of cropping to the content")
    ap.add_argument("--overwrite", action="store_true", help="replace OUT/train and OUT/test if they hold images")
    args = ap.parse_args(argv)

    source = find_source(args.source)
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() == ".png" and p.is_file())
    if args.limit is not None:
        files = files[: args.limit]
    out: Path = args.out
    for split in ("train", "test"):
        d = out / split
        if d.is_dir() and any(d.iterdir()):
            if not args.overwrite:
                sys.exit(f"error: {d} is not empty: pass --overwrite to replace it")
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)

    counts = {"train": 0, "test": 0, "unreadable": 0, "blank": 0, "duplicate": 0}
    bad: list[str] = []
    seen: dict[str, str] = {}
    manifest: dict[str, str] = {}
    total_bytes = 0
    t0 = time.time()
    warnings.simplefilter("ignore")  # PIL's iCCP / large-image warnings: the image is still read
    for i, path in enumerate(files, 1):
        rel = path.relative_to(source).as_posix()
        try:
            raw = path.read_bytes()
            digest = hashlib.sha1(raw).hexdigest()
            if digest in seen:
                counts["duplicate"] += 1
                continue
            seen[digest] = rel
            with Image.open(path) as img:
                img.load()
                square = to_square(img, args.size, crop=not args.no_crop)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            counts["unreadable"] += 1
            bad.append(f"{rel}: {type(err).__name__}: {err}")
            continue
        if square is None:
            counts["blank"] += 1
            continue
        split = split_of(rel)
        target = out / split / out_name(rel)
        square.save(target, format="PNG", optimize=True)
        total_bytes += target.stat().st_size
        manifest[f"{split}/{target.name}"] = rel
        counts[split] += 1
        if i % 500 == 0:
            print(f"  {i}/{len(files)} files, {time.time() - t0:.0f} s", file=sys.stderr)

    info = {"source": str(source), "size": args.size, "crop": not args.no_crop, "test_percent": TEST_PERCENT,
            "files_seen": len(files), **counts, "bytes": total_bytes, "unreadable_files": bad,
            "license": "openclipart: public domain (see /usr/share/doc/openclipart-png/copyright)",
            "outputs": manifest}
    (out / "manifest.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"{len(files)} PNG files under {source}: {counts['train']} -> {out / 'train'}, "
          f"{counts['test']} -> {out / 'test'} ({args.size}x{args.size} RGB, {total_bytes / 2**20:.1f} MiB); "
          f"skipped {counts['unreadable']} unreadable, {counts['blank']} blank, {counts['duplicate']} duplicates "
          f"({time.time() - t0:.0f} s)")
    for line in bad[:10]:
        print(f"  unreadable: {line}")
    if len(bad) > 10:
        print(f"  ... and {len(bad) - 10} more (see {out / 'manifest.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
