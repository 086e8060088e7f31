"""scripts/prepare_pictures.py on a tiny fake package tree: crops, drops, split by source, resume."""

import importlib.util
import io
import json
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare_pictures.py"
spec = importlib.util.spec_from_file_location("prepare_pictures", SCRIPT)
pp = importlib.util.module_from_spec(spec)
sys.modules["prepare_pictures"] = pp  # dataclasses look their module up while the class is made
spec.loader.exec_module(pp)

needs_tools = pytest.mark.skipif(shutil.which("rsvg-convert") is None or shutil.which("zstd") is None,
                                 reason="needs rsvg-convert (librsvg2-bin) and zstd")


def zstd_compress(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


def write_rcc(path: Path, files: dict[str, tuple[bytes, str]]) -> None:
    """A Qt resource file, format 3, as Qt's rcc writes it: header, tree (22-byte entries, breadth first),
    payloads (4-byte size + bytes; zlib entries are qCompress'ed: 4-byte size + zlib stream), names
    (2-byte length, 4-byte hash, UTF-16BE). files: path -> (bytes, "zlib" | "zstd" | "none")."""
    tree_dirs: dict = {}
    for p in files:
        node = tree_dirs
        for part in p.split("/")[:-1]:
            node = node.setdefault(part, {})
        node[p.split("/")[-1]] = p
    names = bytearray()
    name_offsets: dict[str, int] = {}

    def name_offset(name: str) -> int:
        if name not in name_offsets:
            name_offsets[name] = len(names)
            encoded = name.encode("utf-16-be")
            names.extend(struct.pack(">HI", len(name), 0) + encoded)
        return name_offsets[name]

    payload = bytearray()
    entries: list[bytes] = []
    entries.append(b"")  # the root, filled below
    order = [(0, "", tree_dirs)]  # breadth first: a directory's children are contiguous
    while order:
        index, name, node = order.pop(0)
        if isinstance(node, dict):
            first = len(entries)
            children = sorted(node.items())
            entries.extend(b"" for _ in children)
            entry = struct.pack(">IHII", name_offset(name) if index else 0, 2, len(children), first)
            entries[index] = entry + b"\0" * 8
            order.extend((first + i, child_name, child) for i, (child_name, child) in enumerate(children))
        else:
            data, how = files[node]
            flags = 0
            if how == "zlib":
                data, flags = struct.pack(">I", len(data)) + zlib.compress(data), 1
            elif how == "zstd":
                data, flags = zstd_compress(data), 4
            offset = len(payload)
            payload.extend(struct.pack(">I", len(data)) + data)
            entries[index] = struct.pack(">IHHHI", name_offset(name), flags, 0, 0, offset) + b"\0" * 8
    tree = b"".join(entries)
    header_size = 24
    tree_offset = header_size
    payload_offset = tree_offset + len(tree)
    names_offset = payload_offset + len(payload)
    header = b"qres" + struct.pack(">IIIII", 3, tree_offset, payload_offset, names_offset, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + tree + bytes(payload) + bytes(names))


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def photo(rng, h: int, w: int) -> np.ndarray:
    """Smooth colour blobs plus noise: no two alike at 16x16, never blank, never blue-violet."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    f = rng.uniform(2, 6, 3)
    base = np.stack([np.sin(f[c] * (x + y * (c + 1)) + rng.uniform(0, 6)) for c in range(3)], -1)
    return np.clip(127 + 100 * base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


def fake_tree(root: Path) -> dict[str, Path]:
    """One folder per fake package; returns package -> folder."""
    rng = np.random.default_rng(0)
    tux, arena, gcompris, scratch = (root / n for n in ("tux", "arena", "gcompris", "scratch"))
    # tuxpaint: a photo cut-out with transparency, its re-encoded near-duplicate, a small one, an SVG
    (tux / "animals").mkdir(parents=True)
    cutout = np.zeros((150, 200, 4), dtype=np.uint8)
    cutout[30:120, 50:150, :3] = photo(rng, 90, 100)
    cutout[30:120, 50:150, 3] = 255
    Image.fromarray(cutout, "RGBA").save(tux / "animals" / "cat.png")
    Image.fromarray(cutout, "RGBA").save(tux / "animals" / "cat_copy.png", compress_level=1)
    Image.fromarray(photo(rng, 40, 50)).save(tux / "animals" / "tiny.png")
    (tux / "shapes").mkdir()
    (tux / "shapes" / "star.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="80">'
        '<polygon points="50,5 61,35 95,35 68,55 79,78 50,62 21,78 32,55 5,35 39,35" fill="#e33"/></svg>')
    # openarena: a .pk3 zip with a texture, a normal map by name and one by colour
    arena.mkdir()
    normal = np.stack([np.full((128, 128), 128), np.full((128, 128), 128), np.full((128, 128), 250)], -1)
    normal = (normal + rng.integers(-20, 20, normal.shape)).clip(0, 255).astype(np.uint8)
    with zipfile.ZipFile(arena / "pak4-textures.pk3", "w") as z:
        z.writestr("textures/base/wall.jpg", png_bytes(photo(rng, 256, 256), "JPEG"))
        z.writestr("textures/base/wall_norm.png", png_bytes(photo(rng, 256, 256)))
        z.writestr("textures/base/bumps.png", png_bytes(normal))
        z.writestr("textures/base/readme.txt", b"not a picture")
    # gcompris: an rcc with a zlib-compressed painting and a zstd-compressed photo
    write_rcc(gcompris / "rcc" / "activities.rcc", {
        "gcompris/src/activities/paintings/resource/mona.png": (png_bytes(photo(rng, 120, 90)), "zlib"),
        "gcompris/src/activities/erase/resource/calf.jpg": (png_bytes(photo(rng, 96, 128), "JPEG"), "zstd"),
        "gcompris/src/activities/erase/Erase.qml": (b"import QtQuick 2.12", "none")})
    # scratch: a black line drawing on transparent (kept), a one-colour costume (blank), and enough backdrops
    # that both splits get some
    costumes = scratch / "Media" / "Costumes" / "Things"
    costumes.mkdir(parents=True)
    lines = np.zeros((100, 120, 4), dtype=np.uint8)
    lines[10:90:8, 10:110, 3] = 255
    Image.fromarray(lines, "RGBA").save(costumes / "lines.png")
    Image.fromarray(np.full((100, 100, 3), 200, dtype=np.uint8)).save(costumes / "grey.png")
    for i in range(30):
        d = scratch / "Media" / "Backgrounds" / "Outdoors"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(rng, 240 + i, 320)).save(d / f"back{i:02d}.jpg", quality=90)
    return {"tuxpaint-stamps-default": tux, "openarena-081-textures": arena, "gcompris-qt-data": gcompris,
            "scratch": scratch}


def run(out: Path, roots: dict[str, Path]) -> None:
    args = ["--out", str(out), "--no-install"]
    for name, folder in roots.items():
        args += ["--root", f"{name}={folder}"]
    assert pp.main(args) == 0


def read_split(out: Path, split: str):
    images = np.load(out / split / "images.npy")
    labels = np.load(out / split / "labels.npy")
    rows = [json.loads(line) for line in (out / split / "crops.jsonl").read_text().splitlines()]
    return images, labels, rows


@pytest.mark.skipif(shutil.which("zstd") is None, reason="needs zstd")
def test_rcc_reader_reads_zlib_zstd_and_plain_entries(tmp_path):
    files = {"a/b/one.png": (b"one" * 50, "zlib"), "a/two.bin": (b"two" * 9, "zstd"), "three.txt": (b"3", "none")}
    write_rcc(tmp_path / "x.rcc", files)
    assert pp.rcc_entries((tmp_path / "x.rcc").read_bytes()) == {k: v for k, (v, _) in files.items()}


@needs_tools
def test_picture_set_from_a_fake_tree_drops_splits_and_resumes(tmp_path, monkeypatch):
    roots = fake_tree(tmp_path / "pkgs")
    out = tmp_path / "out"
    run(out, roots)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["groups"] == pp.GROUPS
    assert manifest["dropped"] == {"duplicate": 1, "small": 1, "normal-map": 2, "blank": 1}
    sources = {}
    for split in ("train", "test"):
        images, labels, rows = read_split(out, split)
        assert images.dtype == np.uint8 and images.shape == (len(rows), 64, 64, 3)
        assert labels.dtype == np.uint8 and labels.tolist() == [pp.GROUPS.index(r["group"]) for r in rows]
        pngs = sorted((out / split / "png").iterdir())
        assert len(pngs) == len(rows)
        first = Image.open(pngs[0])
        assert first.size == (64, 64) and first.mode == "RGB"
        assert np.array_equal(np.asarray(first), images[int(pngs[0].stem.rsplit("-", 1)[1])])
        sources[split] = {(r["package"], r["source"]) for r in rows}
        assert manifest["splits"][split]["crops"] == len(rows)
        for r in rows:
            assert (r["package"], r["source"], r["group"]) in {
                ("tuxpaint-stamps-default", "animals/cat.png", "photo"),
                ("tuxpaint-stamps-default", "shapes/star.svg", "clip-art"),
                ("openarena-081-textures", "pak4-textures.pk3!textures/base/wall.jpg", "texture"),
                ("gcompris-qt-data", "rcc/activities.rcc!gcompris/src/activities/paintings/resource/mona.png",
                 "painting"),
                ("gcompris-qt-data", "rcc/activities.rcc!gcompris/src/activities/erase/resource/calf.jpg",
                 "photo"),
            } or (r["package"] == "scratch" and r["group"] == "photo" and "Backgrounds/" in r["source"]) or (
                (r["package"], r["source"], r["group"]) == ("scratch", "Media/Costumes/Things/lines.png", "clip-art"))
    assert sources["train"] and sources["test"] and not sources["train"] & sources["test"]
    all_rows = read_split(out, "train")[2] + read_split(out, "test")[2]
    crops_of = {}
    for r in all_rows:
        crops_of.setdefault(r["source"], []).append(r["crop"])
    assert len(crops_of) == 6 + 30  # cat (not its copy), star, wall, the two rcc entries, lines, 30 backdrops
    assert crops_of["animals/cat.png"] == ["fit"] and crops_of["shapes/star.svg"] == ["fit"]
    big = crops_of["Media/Backgrounds/Outdoors/back29.jpg"]  # 320x269 at weight 2.5: 9 crops, 1.0 once
    assert big == ["centre@1.0", "random@1#1", "random@0.7#2", "random@0.5#3", "random@0.35#4", "random@0.25#5",
                   "random@0.7#6", "random@0.5#7", "random@0.35#8"]

    # a re-run processes nothing and writes the same set; a new picture is the only one processed
    before = {s: (out / s / "images.npy").read_bytes() for s in ("train", "test")}
    calls = []
    real_process = pp.process
    monkeypatch.setattr(pp, "process", lambda source: calls.append(source.path) or real_process(source))
    run(out, roots)
    assert calls == []
    assert {s: (out / s / "images.npy").read_bytes() for s in ("train", "test")} == before
    Image.fromarray(photo(np.random.default_rng(7), 200, 300)).save(
        roots["scratch"] / "Media" / "Backgrounds" / "Outdoors" / "new.jpg")
    run(out, roots)
    assert calls == ["Media/Backgrounds/Outdoors/new.jpg"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(manifest["splits"][s]["sources"] for s in ("train", "test")) == 37


def test_split_depends_only_on_the_source_id():
    ids = [f"pkg:file{i}.png" for i in range(2000)]
    splits = [pp.split_of(i) for i in ids]
    assert splits == [pp.split_of(i) for i in ids]
    assert 0.07 < splits.count("test") / len(ids) < 0.13


def test_crop_count_grows_with_size_and_weight():
    assert pp.crop_count(60, 60, 1.0) == 1
    assert pp.crop_count(160, 160, 1.0) == 2
    assert pp.crop_count(1920, 1080, 1.0) == 18
    assert pp.crop_count(1920, 1080, 0.5) == 9
    assert pp.crop_count(8000, 8000, 2.0) == pp.MAX_CROPS
