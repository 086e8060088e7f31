"""Hostile inputs get one line, quickly, in bounded memory: config.json that is not a small regular file,
settings no model can have together, extreme sampling values, and a disk that fills up during `mvq decode`."""

import errno
import json
import os
import signal
import time
import tracemalloc
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from tokenizer_cli.cli.app import app
from tokenizer_cli.hub import BadCheckpoint, read_config


def run(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


@contextmanager
def deadline(seconds: float):
    """Fail (instead of hanging the test run) when the block takes longer: the alarm interrupts a blocked open()."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def make_fifo(path):
    os.mkfifo(path)


def link_to_dev_zero(path):
    os.symlink("/dev/zero", path)


def make_folder(path):
    path.mkdir()


def make_huge_sparse_file(path):
    with open(path, "wb") as f:
        f.truncate(4 << 30)  # 4 GiB of zeros that take no disk space


def nest_deeply(path):
    path.write_text("[" * 100_000 + "]" * 100_000)


def nest_deeply_inside_a_config(path):
    text = path.read_text().rstrip()[:-1]  # a real config.json, its closing brace removed
    path.write_text(text + ', "x": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}")  # 300 kB


HOSTILE_CONFIGS = {
    "fifo": (make_fifo, "is a FIFO, not a regular file"),
    "link to /dev/zero": (link_to_dev_zero, "is a device, not a regular file"),
    "folder": (make_folder, "is a folder, not a regular file"),
    "4 GiB": (make_huge_sparse_file, "larger than 1,048,576 bytes"),
    "nested 100,000 deep": (nest_deeply, "JSON nested too deeply"),
    "nested deep inside": (nest_deeply_inside_a_config, "JSON nested too deeply"),
}


@pytest.mark.parametrize("kind", HOSTILE_CONFIGS)
def test_a_config_json_that_is_not_a_small_regular_file(runner, model_dir, image_dir, tmp_path, kind):
    make, message = HOSTILE_CONFIGS[kind]
    config = model_dir / "config.json"
    if kind != "nested deep inside":
        config.unlink()
    make(config)
    tracemalloc.start()
    try:
        with deadline(10), pytest.raises(BadCheckpoint, match=message):
            read_config(model_dir)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20  # bytes: the file is never read whole
    t0 = time.monotonic()
    with deadline(30):
        res = run(runner, "encode", image_dir, tmp_path / "t.npy", "--model", model_dir, "--device", "cpu")
    assert time.monotonic() - t0 < 10
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(f"Error: {config}: ") and message in res.stderr


def test_a_grid_layout_whose_token_count_is_not_a_square(runner, model_dir, image_dir, tmp_path):
    from tokenizer_cli.config import ConfigError, TokenizerConfig

    with pytest.raises(ConfigError, match="grid layout needs tokens = side\\^2"):
        TokenizerConfig(layout="grid", tokens=10)
    with pytest.raises(ConfigError, match="got tokens 16 for 28x28"):
        TokenizerConfig(layout="grid", tokens=16)  # a square, but 28 / 4 is not a power of two
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["tokenizer"].update(layout="grid", tokens=10)
    (model_dir / "config.json").write_text(json.dumps(cfg))
    res = run(runner, "encode", image_dir, tmp_path / "t.npy", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"Error: {model_dir}/config.json: grid layout needs tokens")
    res = run(runner, "train", "tokenizer", tmp_path / "m", "--layout", "grid", "--tokens", "10", "--steps", "1")
    assert res.exit_code == 1 and res.stderr == ("Error: grid layout needs tokens = side^2 with image_size / side a "
                                                 "power of two; got tokens 10 for 28x28 images\n")
    assert not (tmp_path / "m").exists()


def test_extreme_sampling_values_give_sane_tokens():
    from conftest import tiny_prior, tiny_tokenizer

    prior = tiny_prior(4, 2)
    greedy = prior.generate(16, temperature=0, seed=0)
    for temperature in (1e-300, 1e-45, 1e-30):  # 0 in float32, a denormal, a normal number
        assert torch.equal(prior.generate(16, temperature=temperature, seed=0), greedy)
    for temperature in (1.0, 1e-300, 1e6):  # top-p that small keeps only the most likely token
        assert torch.equal(prior.generate(16, temperature=temperature, top_p=1e-12, seed=0), greedy)
    assert prior.generate(64, temperature=1e30, seed=0).unique().numel() > 1  # flat, not NaN
    with pytest.raises(ValueError, match="finite"):
        prior.generate(4, temperature=float("inf"))

    q = tiny_tokenizer("mvq").quantizer
    codes = torch.arange(4).repeat(8, 1)  # (8, 4)
    most_likely = q.sample_masks(codes, temperature=0)
    for temperature in (1e-300, 1e-45):
        assert torch.equal(q.sample_masks(codes, torch.Generator().manual_seed(0), temperature), most_likely)
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match="mask temperature"):
            q.sample_masks(codes, temperature=bad)


@pytest.mark.parametrize("option", [["--temperature", "inf"], ["--temperature", "nan"], ["--mask-temperature", "inf"],
                                    ["--top-p", "nan"], ["--top-p", "0"], ["--choice-temperature", "inf"],
                                    ["--guidance-scale", "nan"]])
def test_non_finite_sampling_options_are_refused(runner, model_with_both_priors, tmp_path, option):
    res = run(runner, "sample", "--n", "2", "--model", model_with_both_priors, "--sampler", "maskgit",
              "--out", tmp_path / "s.png", "--device", "cpu", *option)
    assert res.exit_code in (1, 2) and "Traceback" not in res.output and not (tmp_path / "s.png").exists()
    assert option[0] in res.stderr or "top_p" in res.stderr


@pytest.mark.parametrize("sampler", [["--sampler", "ar"], ["--sampler", "maskgit", "--choice-temperature", "1e-300"]])
def test_tiny_temperature_and_top_p_sample_images(runner, model_with_both_priors, tmp_path, sampler):
    res = run(runner, "sample", "--n", "4", "--model", model_with_both_priors, "--out", tmp_path / "s.png",
              "--device", "cpu", "--temperature", "1e-300", "--top-p", "1e-12", "--mask-temperature", "1e-300",
              *sampler)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s.png").is_file()


@pytest.fixture
def ten_rows(runner, model_dir, tmp_path):
    """A token file of 10 rows written by the tiny model."""
    from tokenizer_cli.pipeline import load_pipeline
    from tokenizer_cli.tokenfile import make_manifest, save_tokens

    pipe = load_pipeline(str(model_dir))
    tok = pipe.tokenizer
    ids = np.random.default_rng(0).integers(0, tok.vocab_size, (10, 2))
    manifest = make_manifest(pipe.source, pipe.config_hash, 2, tok.vocab_size, [f"r{i}" for i in range(10)], [],
                             tokenizer_id=pipe.tokenizer_id, num_masks=tok.num_masks)
    save_tokens(tmp_path / "t.npy", ids, manifest, False, masks=np.zeros((10, 2), dtype=np.int64))
    return tmp_path / "t.npy"


@pytest.mark.parametrize("existing", [False, True])
def test_decode_into_a_folder_that_fills_the_disk_leaves_no_image(runner, model_dir, tmp_path, ten_rows,
                                                                  monkeypatch, existing):
    from PIL import Image

    out = tmp_path / "parent" / "out"
    if existing:
        out.mkdir(parents=True)
        (out / "mine.txt").write_text("the user's")
    pil_save, written = Image.Image.save, []

    def save_until_full(img, fp, *args, **kwargs):  # the disk is full after 3 PNGs
        if len(written) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        pil_save(img, fp, *args, **kwargs)
        written.append(fp)

    monkeypatch.setattr(Image.Image, "save", save_until_full)
    res = run(runner, "decode", ten_rows, out, "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 1 and len(written) == 3
    assert res.stderr.splitlines()[-1] == f"Error: {out}/r3.png: No space left on device"  # named after its source
    if existing:
        assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    else:
        assert sorted(p.name for p in out.parent.iterdir()) == []  # no folder, no temp folder

    monkeypatch.setattr(Image.Image, "save", pil_save)
    res = run(runner, "decode", ten_rows, out, "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"r{i}.png" for i in range(10))
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp folder left inside either


def test_a_manifest_nested_too_deeply_is_one_line(runner, model_dir, tmp_path, ten_rows):
    manifest = ten_rows.with_suffix(".json")
    manifest.write_text("[" * 100_000 + "]" * 100_000)
    res = run(runner, "decode", ten_rows, tmp_path / "out", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 1
    assert res.stderr == f"Error: {manifest}: manifest: JSON nested too deeply\n"


def test_pipeline_decode_file_that_fills_the_disk_leaves_no_image(model_dir, tmp_path, ten_rows, monkeypatch):
    from PIL import Image

    from tokenizer_cli.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(str(model_dir), device="cpu")
    pil_save, written = Image.Image.save, []

    def save_until_full(img, fp, *args, **kwargs):  # the disk is full after 3 PNGs
        if len(written) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        pil_save(img, fp, *args, **kwargs)
        written.append(fp)

    monkeypatch.setattr(Image.Image, "save", save_until_full)
    out = tmp_path / "parent" / "out"
    with pytest.raises(OSError, match="No space left"):
        pipe.decode_file(ten_rows, out)
    assert len(written) == 3 and sorted(p.name for p in out.parent.iterdir()) == []  # no folder, no temp folder
    monkeypatch.setattr(Image.Image, "save", pil_save)
    paths = pipe.decode_file(ten_rows, out)
    assert paths == [out / f"r{i}.png" for i in range(10)] and all(p.is_file() for p in paths)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
