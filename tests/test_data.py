"""tokenizer_cli.data (reading) and tokenizer_cli.files (writing) on real files written into tmp_path."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tokenizer_cli.data import (
    ImageSource,
    InputError,
    SourceDataset,
    collate_sources,
    is_idx_file,
    iter_sources,
    load_fashion_mnist,
    load_image,
    load_source,
    read_idx_images,
    read_image,
    read_idx_labels,
)
from tokenizer_cli.files import atomic_write, make_grid, save_png
from tokenizer_cli.images import float_to_uint8, to_uint8


def write_idx(path: Path, arr: np.ndarray, magic: int, gz: bool = False, cut: int = 0) -> Path:
    raw = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
    raw = raw[: len(raw) - cut]
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def png(path: Path, img: Image.Image) -> Path:
    img.save(path)
    return path


# ---------------------------------------------------------------- load_image: modes and sizes


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "I;16", "I", "F", "CMYK", "1", "RGB"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_mode_loads(tmp_path, mode, channels):
    suffix = ".tif" if mode in ("CMYK", "I", "F") else ".png"
    path = tmp_path / f"img{suffix}"
    Image.new(mode, (30, 20)).save(path)
    out = load_image(path, 28, channels)
    assert out.shape == (channels, 28, 28) and out.dtype == np.float32
    assert out.min() >= -1.0 and out.max() <= 1.0


@pytest.mark.parametrize("wh", [(1, 1), (300, 17), (17, 300), (28, 28), (1000, 999)])
def test_odd_sizes(tmp_path, wh):
    path = png(tmp_path / "odd.png", Image.new("RGB", wh, (10, 200, 30)))
    out = load_image(path, 28, 3)
    assert out.shape == (3, 28, 28)
    np.testing.assert_allclose(out[:, 14, 14], np.array([10, 200, 30]) / 127.5 - 1, atol=2 / 127.5)


def test_transparent_pixels_become_white(tmp_path):
    rgba = png(tmp_path / "rgba.png", Image.new("RGBA", (8, 8), (0, 0, 0, 0)))
    assert np.all(load_image(rgba, 8, 3) == 1.0)
    la = png(tmp_path / "la.png", Image.new("LA", (8, 8), (0, 0)))
    assert np.all(load_image(la, 8, 1) == 1.0)
    half = png(tmp_path / "half.png", Image.new("RGBA", (8, 8), (255, 0, 0, 128)))
    r, g, b = load_image(half, 8, 3)[:, 0, 0]
    assert r == 1.0 and -0.1 < g < 0.1 and -0.1 < b < 0.1  # red over white at half alpha: pink


def test_palette_transparency_composited_on_white(tmp_path):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0] * 256)  # every entry black
    img.paste(1, (0, 0, 4, 8))  # left half index 1 (black, opaque); right half index 0 (transparent)
    path = tmp_path / "p.png"
    img.save(path, transparency=0)
    out = load_image(path, 8, 1)[0]
    assert np.all(out[:, :4] == -1.0) and np.all(out[:, 4:] == 1.0)


def test_i16_gradient_keeps_order_and_range(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    path = png(tmp_path / "g16.png", Image.fromarray(ramp))
    assert Image.open(path).mode.startswith("I")
    row = load_image(path, 64, 1)[0, 10]
    assert np.all(np.diff(row) >= 0) and row[0] == -1.0 and row[-1] == 1.0
    mid = load_image(png(tmp_path / "mid.png", Image.fromarray(np.full((4, 4), 32896, np.uint16))), 4, 1)
    assert np.allclose(mid, 128 / 127.5 - 1, atol=1e-6)  # 16-bit full scale: 32896 / 257 = 128


def test_float_image_in_unit_range(tmp_path):
    path = tmp_path / "f.tif"
    Image.fromarray(np.full((4, 4), 1.0, np.float32), "F").save(path)
    assert np.all(load_image(path, 4, 1) == 1.0)


def test_cmyk_and_bilevel_content(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 0, 0, 0))  # white
    cmyk.paste((0, 0, 0, 255), (0, 0, 4, 8))  # left half black ink
    cmyk.save(tmp_path / "c.tif")
    out = load_image(tmp_path / "c.tif", 8, 3)
    assert np.all(out[:, :, :4] == -1.0) and np.all(out[:, :, 4:] == 1.0)
    bw = Image.new("1", (8, 8), 0)
    bw.paste(1, (4, 0, 8, 8))
    out = load_image(png(tmp_path / "b.png", bw), 8, 1)[0]
    assert np.all(out[:, :4] == -1.0) and np.all(out[:, 4:] == 1.0)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("L", (40, 20), 255)
    img.paste(0, (0, 0, 20, 20))  # left half black
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: left becomes top
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    out = load_image(path, 16, 1)[0]
    assert out[:6].mean() < -0.9 and out[-6:].mean() > 0.9  # top black, bottom white
    assert abs(out[:, :6].mean() - out[:, -6:].mean()) < 0.1  # no left/right difference


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_fit_geometry_on_a_3_to_1_picture(tmp_path, fit):
    """crop keeps the centre square (the middle third here); pad keeps the whole picture, its longer side the
    model's, centred between bars of its edge colour (black: the median of red, green and blue edges)."""
    picture = np.zeros((32, 96, 3), np.uint8)
    picture[:, :32], picture[:, 32:64], picture[:, 64:] = (200, 0, 0), (0, 200, 0), (0, 0, 200)
    out = float_to_uint8(load_image(png(tmp_path / "wide.png", Image.fromarray(picture)), 24, 3, fit=fit))
    if fit == "crop":
        assert np.abs(out.astype(int) - (0, 200, 0)).max() <= 8  # all green: the centre square (edges may bleed)
        return
    assert np.all(out[:8] == 0) and np.all(out[16:] == 0)  # 24 wide -> 8 tall, 8 rows of bars above and below
    middle = out[9:15].astype(int)
    for x, colour in ((3, (200, 0, 0)), (12, (0, 200, 0)), (20, (0, 0, 200))):  # all three thirds are there
        assert np.abs(middle[:, x] - colour).max() <= 8


def test_large_pictures_are_shrunk_with_antialiasing(tmp_path):
    """A fine black-and-white checkerboard shrunk 40x becomes even grey, not aliased stripes."""
    board = (np.indices((1120, 1120)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = float_to_uint8(load_image(png(tmp_path / "board.png", Image.fromarray(board)), 28, 1))
    assert np.abs(out.astype(int) - 128).max() <= 8


def _write_png16_rgb(path: Path, rgb16: np.ndarray) -> Path:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write one)."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = rgb16.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def _red_top_blue_bottom(path: Path) -> Path:
    if path.suffix == ".png":  # 16-bit RGB
        top, bottom = (60000, 0, 0), (0, 0, 60000)
        return _write_png16_rgb(path, np.array([[top] * 20] * 10 + [[bottom] * 20] * 10, np.uint16))
    if path.suffix == ".gif":  # palette, with a transparent right column
        img = Image.new("P", (20, 20), 0)
        img.putpalette([220, 0, 0, 0, 0, 220, 0, 0, 0] + [0, 0, 0] * 253)
        img.paste(1, (0, 10, 20, 20))
        img.paste(2, (16, 0, 20, 20))
        img.save(path, transparency=2)
        return path
    if path.name.startswith("cmyk"):
        img = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # red ink
        img.paste((255, 255, 0, 0), (0, 10, 20, 20))  # blue ink below
        img.save(path, quality=95)
        return path
    img = Image.new("RGB", (20, 20), (220, 0, 0))  # stored turned: red on the left, blue on the right
    img.paste((0, 0, 220), (10, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: the left (red) comes on top
    img.save(path, exif=exif, quality=95)
    return path


@pytest.mark.parametrize("name", ["deep.png", "cmyk.jpg", "palette.gif", "turned.jpg"])
def test_pictures_as_people_have_them_come_out_right_side_up_and_in_colour(tmp_path, name):
    path = _red_top_blue_bottom(tmp_path / name)
    if name == "cmyk.jpg":
        assert Image.open(path).mode == "CMYK"
    array, info = read_image(path, 16, 3)
    out = float_to_uint8(array).astype(int)  # (16, 16, 3)
    top, bottom = out[2:6, 2:10].reshape(-1, 3).mean(0), out[10:14, 2:10].reshape(-1, 3).mean(0)
    assert top[0] > 150 and top[2] < 60, top  # red on top
    assert bottom[2] > 150 and bottom[0] < 60, bottom  # blue below
    assert info.colour and (info.width, info.height) == (20, 20)
    if name == "palette.gif":
        assert np.all(out[:, 14:] >= 250)  # the transparent column on white


def test_grey_to_rgb_and_rgb_to_grey(tmp_path):
    out = load_image(png(tmp_path / "g.png", Image.new("L", (4, 4), 51)), 4, 3)
    assert np.allclose(out, 51 / 127.5 - 1, atol=1e-6)
    out = load_image(png(tmp_path / "c.png", Image.new("RGB", (4, 4), (255, 255, 255))), 4, 1)
    assert out.shape == (1, 4, 4) and np.all(out == 1.0)


# ---------------------------------------------------------------- load_image: bad files


def test_bad_files_name_the_file(tmp_path):
    good = png(tmp_path / "good.png", Image.new("RGB", (64, 64), (1, 2, 3)))
    data = good.read_bytes()
    cases = {
        "empty.png": b"",
        "text.png": b"hello, I am not an image\n",
        "half.png": data[: len(data) // 2],
        "garbled.png": data[:8] + b"\x00" * 40 + data[48:],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match=name):
            load_image(tmp_path / name, 28, 1)
    with pytest.raises(InputError, match="text.png: cannot identify image file"):
        load_image(tmp_path / "text.png", 28, 1)
    with pytest.raises(InputError, match="empty"):
        load_image(tmp_path / "empty.png", 28, 1)
    with pytest.raises(InputError, match="missing.png: no such file"):
        load_image(tmp_path / "missing.png", 28, 1)


def test_truncated_jpeg_is_an_error(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / "t.jpg"
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(InputError, match="t.jpg"):
        load_image(path, 28, 3)


@pytest.mark.parametrize("side", [12, 20])  # 144 px: bomb warning (> limit); 400 px: bomb error (> 2x limit)
def test_decompression_bomb(tmp_path, monkeypatch, side):
    path = png(tmp_path / "bomb.png", Image.new("L", (side, side)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(InputError, match="bomb.png: image is too large"):
        load_image(path, 28, 1)


# ---------------------------------------------------------------- IDX files


def test_idx_images_plain_and_gz(tmp_path):
    arr = np.arange(3 * 5 * 4, dtype=np.uint8).reshape(3, 5, 4)
    for gz in (False, True):
        path = write_idx(tmp_path / f"x-images-idx3-ubyte{'.gz' if gz else ''}", arr, 0x803, gz)
        assert is_idx_file(path)
        np.testing.assert_array_equal(read_idx_images(path), arr)
    labels = write_idx(tmp_path / "x-labels-idx1-ubyte.gz", np.array([3, 1, 4]), 0x801, True)
    assert not is_idx_file(labels)
    np.testing.assert_array_equal(read_idx_labels(labels), [3, 1, 4])
    assert read_idx_labels(labels).dtype == np.int64
    with pytest.raises(InputError, match="not an IDX image file"):
        read_idx_images(labels)
    assert not is_idx_file(png(tmp_path / "p.png", Image.new("L", (2, 2))))


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx(tmp_path, gz):
    path = write_idx(tmp_path / "t-images-idx3-ubyte", np.zeros((3, 4, 4)), 0x803, gz, cut=5)
    with pytest.raises(InputError, match="t-images-idx3-ubyte"):
        read_idx_images(path)
    broken_gz = tmp_path / "b-images-idx3-ubyte.gz"
    broken_gz.write_bytes(gzip.compress(b"\x00" * 200)[:30])
    with pytest.raises(InputError, match="b-images-idx3-ubyte.gz"):
        read_idx_images(broken_gz)


def test_load_fashion_mnist_fake_root(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.ones((2, 28, 28)), 0x803, True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([7, 9]), 0x801, True)
    images, labels = load_fashion_mnist(str(tmp_path), "test")
    assert images.shape == (2, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [7, 9] and labels.dtype == np.int64
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(str(tmp_path), "train")
    with pytest.raises(InputError, match="split"):
        load_fashion_mnist(str(tmp_path), "val")


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="dataset not installed")
def test_load_real_fashion_mnist():
    images, labels = load_fashion_mnist(split="test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert set(labels.tolist()) == set(range(10))


def test_load_source_idx_rows(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    path = str(write_idx(tmp_path / "r-images-idx3-ubyte.gz", arr, 0x803, True))
    out = load_source(ImageSource(path, 2), 28, 1)
    np.testing.assert_array_equal(out[0], arr[2].astype(np.float32) / 127.5 - 1)  # same size: no resampling
    rgb = load_source(ImageSource(path, 3), 32, 3)
    assert rgb.shape == (3, 32, 32) and np.array_equal(rgb[0], rgb[2])
    with pytest.raises(InputError, match="#9"):
        load_source(ImageSource(path, 9), 28, 1)
    assert ImageSource(path, 17).label() == f"{path}#17" and ImageSource("a.png").label() == "a.png"


# ---------------------------------------------------------------- iter_sources


def test_iter_sources_folders(tmp_path):
    root = tmp_path / "root"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hiddendir").mkdir()
    for rel in ["b.png", "a.jpg", "Z.PNG", "sub/c.webp", "sub/deeper/d.bmp", ".hidden.png", ".hiddendir/x.png"]:
        png(root / rel, Image.new("RGB", (2, 2)))
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "data.npy").write_bytes(b"x")
    write_idx(root / "sub" / "e-images-idx3-ubyte.gz", np.zeros((3, 2, 2)), 0x803, True)
    write_idx(root / "sub" / "e-labels-idx1-ubyte.gz", np.zeros(3), 0x801, True)
    labels = [s.label() for s in iter_sources([str(root)])]
    rel = [os.path.relpath(x, root) for x in labels]
    assert rel == [
        "Z.PNG",
        "a.jpg",
        "b.png",
        "sub/c.webp",
        "sub/deeper/d.bmp",
        "sub/e-images-idx3-ubyte.gz#0",
        "sub/e-images-idx3-ubyte.gz#1",
        "sub/e-images-idx3-ubyte.gz#2",
    ]
    assert labels == [s.label() for s in iter_sources([str(root)])]  # deterministic


def test_iter_sources_files_empty_and_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    assert list(iter_sources([str(tmp_path / "empty")])) == []
    txt = tmp_path / "notes.txt"
    txt.write_text("explicit files are tried whatever their suffix")
    assert list(iter_sources([txt])) == [ImageSource(str(txt))]
    idx = write_idx(tmp_path / "plain.idx", np.zeros((2, 3, 3)), 0x803)
    assert list(iter_sources([str(idx)])) == [ImageSource(str(idx), 0), ImageSource(str(idx), 1)]
    it = iter_sources([str(txt), str(tmp_path / "missing")])
    assert next(it) == ImageSource(str(txt))  # lazy: the missing path only fails when reached
    with pytest.raises(InputError, match="missing: no such file or folder"):
        next(it)


# ---------------------------------------------------------------- dataset and loader


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_mixed_good_and_bad(tmp_path, workers):
    sources = []
    for i in range(7):
        p = tmp_path / f"{i}.png"
        if i in (2, 5):
            p.write_text("broken")
        else:
            png(p, Image.new("RGB", (10 + i, 12), (i * 30, 0, 0)))
        sources.append(ImageSource(str(p)))
    idx = write_idx(tmp_path / "i-images-idx3-ubyte", np.full((2, 28, 28), 255), 0x803)
    sources += [ImageSource(str(idx), 0), ImageSource(str(idx), 1)]
    ds = SourceDataset(sources, 16, 3)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_sources, num_workers=workers)
    seen, errors, sizes = [], [], []
    for indices, images, errs, infos in loader:
        assert images.shape == (len(indices), 3, 16, 16) and images.dtype == torch.float32
        seen += indices.tolist()
        errors += errs
        sizes += [(info.width, info.height, info.colour) for info in infos]
    assert seen == [0, 1, 3, 4, 6, 7, 8]
    assert sizes == [(10, 12, False), (11, 12, False), (13, 12, True), (14, 12, True), (16, 12, True),
                     (28, 28, False), (28, 28, False)]  # red 0 and 30 on black are too dark to count as colour
    assert [i for i, _ in errors] == [2, 5]
    assert "2.png" in errors[0][1] and "cannot identify" in errors[0][1]


def test_collate_all_bad():
    indices, images, errors, infos = collate_sources([(0, None, "a: bad", None), (1, None, "b: bad", None)])
    assert len(indices) == 0 and images.numel() == 0 and errors == [(0, "a: bad"), (1, "b: bad")] and infos == []


# ---------------------------------------------------------------- output


def test_to_uint8_round_trip(tmp_path):
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = png(tmp_path / "all.png", Image.fromarray(pixels))
    x = torch.from_numpy(load_image(path, 16, 1))[None]
    np.testing.assert_array_equal(to_uint8(x)[0], pixels)  # exact inverse of the input scaling
    rgb = to_uint8(torch.tensor([-2.0, -1.0, 0.0, 1.0, 5.0, float("nan")]).view(1, 1, 1, 6).repeat(2, 3, 1, 1))
    assert rgb.shape == (2, 1, 6, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255, 128]


def test_make_grid_shapes():
    grey = np.zeros((5, 8, 8), np.uint8)
    grid = make_grid(grey)
    assert grid.shape == (2 * 10 + 2, 3 * 10 + 2) and grid[0, 0] == 255 and grid[2, 2] == 0
    assert make_grid(np.zeros((5, 8, 6, 3), np.uint8), ncols=5, pad=0).shape == (8, 30, 3)
    assert make_grid(np.zeros((1, 4, 4), np.uint8)).shape == (8, 8)
    with pytest.raises(ValueError):
        make_grid(np.zeros((0, 4, 4), np.uint8))


def test_save_png_round_trip(tmp_path):
    arr = np.random.default_rng(2).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    save_png(arr, tmp_path / "out" / "x.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "x.png")), arr)
    assert os.listdir(tmp_path / "out") == ["x.png"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_write_cleans_up(tmp_path, exc):
    def writer(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise exc("boom")

    with pytest.raises(exc):
        atomic_write(tmp_path / "t.bin", writer)
    assert os.listdir(tmp_path) == []
    (tmp_path / "keep.bin").write_text("old")
    with pytest.raises(exc):
        atomic_write(tmp_path / "keep.bin", writer)
    assert os.listdir(tmp_path) == ["keep.bin"] and (tmp_path / "keep.bin").read_text() == "old"
    atomic_write(tmp_path / "keep.bin", lambda tmp: Path(tmp).write_text("new"))
    assert os.listdir(tmp_path) == ["keep.bin"] and (tmp_path / "keep.bin").read_text() == "new"


def test_packed_image_array_loads_and_finds_its_test_split(tmp_path):
    from tokenizer_cli.datasets import held_out_folder, load_images

    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("test", 3)):
        (tmp_path / split).mkdir()
        np.save(tmp_path / split / "images.npy", rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8))
    train = str(tmp_path / "train" / "images.npy")
    images = load_images(train, "train", 16, 3)
    assert images.shape == (5, 16, 16, 3) and images.dtype == np.uint8
    assert np.array_equal(images, np.load(train))
    assert load_images(train, "train", 16, 3, limit=2).shape[0] == 2
    assert held_out_folder(train) == tmp_path / "test" / "images.npy"
    with pytest.raises(InputError, match="--channels 3"):
        load_images(train, "train", 16, 1)
    with pytest.raises(InputError, match="--image-size"):
        load_images(train, "train", 32, 3)
    np.save(tmp_path / "floats.npy", np.zeros((2, 16, 16, 3), dtype=np.float32))
    with pytest.raises(InputError, match="not uint8"):
        load_images(str(tmp_path / "floats.npy"), "train", 16, 3)


def test_a_packed_array_that_is_not_one_is_one_line(tmp_path):
    from tokenizer_cli.datasets import array_shape, load_images

    np.savez(tmp_path / "archive", images=np.zeros((2, 16, 16, 3), dtype=np.uint8))
    os.replace(tmp_path / "archive.npz", tmp_path / "images.npy")  # a zip under a .npy name
    with pytest.raises(InputError, match="images.npy: a .npz archive"):
        load_images(str(tmp_path / "images.npy"), "train", 16, 3)
    with pytest.raises(InputError, match="images.npy: a .npz archive"):
        array_shape(tmp_path / "images.npy")
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(InputError, match="text.npy: not a numpy image array"):
        load_images(str(tmp_path / "text.npy"), "train", 16, 3)
