import json
import re

import numpy as np
import pytest
from PIL import Image

from tokenizer_cli.cli.app import app


def run(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def test_encode_then_decode_round_trip(runner, model_dir, image_dir, tmp_path):
    out = tmp_path / "tokens.npy"
    res = run(runner, "encode", image_dir, out, "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 0, res.output
    tokens = np.load(out)
    manifest = json.loads((tmp_path / "tokens.json").read_text())
    assert tokens.shape == (4, 2) and tokens.dtype == np.uint8
    assert manifest["rows"] == 4 and manifest["vocab_size"] == 4 and manifest["tokens_per_image"] == 2
    assert manifest["num_masks"] == 3 and np.load(tmp_path / manifest["masks_file"]).shape == (4, 2)
    assert [s.rsplit("/", 1)[-1] for s in manifest["sources"]] == ["a.png", "b.jpg", "c.png", "d.gif"]
    assert manifest["skipped"] == []

    res = run(runner, "decode", out, tmp_path / "decoded", "--grid", tmp_path / "grid.png", "--model", model_dir,
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    pngs = sorted((tmp_path / "decoded").glob("*.png"))
    assert len(pngs) == 4
    assert Image.open(pngs[0]).size == (28, 28)
    assert Image.open(tmp_path / "grid.png").size[0] > 28 * 2


def test_encode_is_deterministic_and_matches_the_model(runner, model_dir, image_dir, tmp_path):
    from tokenizer_cli.data import load_image
    from tokenizer_cli.pipeline import load_pipeline
    import torch

    run(runner, "encode", image_dir / "a.png", tmp_path / "t.npy", "--model", model_dir, "--device", "cpu")
    pipe = load_pipeline(str(model_dir))
    x = torch.from_numpy(load_image(image_dir / "a.png", 28, 1))[None]
    assert np.array_equal(np.load(tmp_path / "t.npy"), pipe.tokenizer.encode(x).numpy())


def test_encode_reads_idx_files(runner, model_dir, tmp_path):
    import struct

    idx = tmp_path / "train-images-idx3-ubyte"
    idx.write_bytes(struct.pack(">IIII", 0x803, 3, 28, 28) + bytes(range(256)) * 9 + bytes(3 * 784 - 2304))
    res = run(runner, "encode", idx, tmp_path / "t.npy", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "t.npy").shape == (3, 2)


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_bad_image_is_named_and_nothing_written(runner, model_dir, image_dir, tmp_path, content):
    bad = image_dir / "bad.png"
    if content is None:  # a truncated PNG
        content = (image_dir / "a.png").read_bytes()[:60]
    bad.write_bytes(content)
    out = tmp_path / "tokens.npy"
    res = run(runner, "encode", image_dir, out, "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 1
    assert "bad.png" in res.stderr and "Traceback" not in res.output
    assert not out.exists() and not (tmp_path / "tokens.json").exists()
    assert not list(tmp_path.glob(".*tmp*"))

    res = run(runner, "encode", image_dir, out, "--model", model_dir, "--device", "cpu", "--skip-bad")
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "tokens.json").read_text())
    assert np.load(out).shape == (4, 2)
    assert len(manifest["skipped"]) == 1 and manifest["skipped"][0]["source"].endswith("bad.png")
    assert manifest["skipped"][0]["reason"]


def test_empty_folder(runner, model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    res = run(runner, "encode", tmp_path / "empty", tmp_path / "t.npy", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 1 and "no images found" in res.stderr


def test_missing_input(runner, model_dir, tmp_path):
    res = run(runner, "encode", tmp_path / "nope", tmp_path / "t.npy", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 1 and "nope" in res.stderr


def test_output_exists_needs_overwrite(runner, model_dir, image_dir, tmp_path):
    out = tmp_path / "tokens.npy"
    out.write_bytes(b"precious")
    res = run(runner, "encode", image_dir, out, "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 1 and "--overwrite" in res.stderr
    assert out.read_bytes() == b"precious"
    res = run(runner, "encode", image_dir, out, "--model", model_dir, "--device", "cpu", "--overwrite")
    assert res.exit_code == 0 and np.load(out).shape == (4, 2)


def test_output_must_be_npy(runner, model_dir, image_dir, tmp_path):
    res = run(runner, "encode", image_dir, tmp_path / "t.txt", "--model", model_dir)
    assert res.exit_code == 1 and ".npy" in res.stderr


def test_missing_model_names_all_three_tries(runner, image_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    res = run(runner, "encode", image_dir, tmp_path / "t.npy", "--model", "nobody/no-such-model")
    assert res.exit_code == 1
    assert "not a local folder" in res.stderr and "shipped" in res.stderr and "Hub" in res.stderr
    res = run(runner, "encode", image_dir, tmp_path / "t.npy", "--model", "no-such-default")
    assert res.exit_code == 1 and "not a local folder" in res.stderr


def test_checkpoint_that_is_not_safetensors(runner, model_dir, image_dir, tmp_path):
    import pickle

    (model_dir / "tokenizer.safetensors").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    res = run(runner, "encode", image_dir, tmp_path / "t.npy", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 1 and "safetensors" in res.stderr and "Traceback" not in res.output


def test_config_that_is_not_json(runner, model_dir, image_dir, tmp_path):
    (model_dir / "config.json").write_text("{oops")
    res = run(runner, "encode", image_dir, tmp_path / "t.npy", "--model", model_dir)
    assert res.exit_code == 1 and "config.json" in res.stderr


@pytest.mark.parametrize(
    "tokens, message",
    [
        (np.zeros((3, 2), dtype=np.float32), "integer"),
        (np.zeros((3, 5), dtype=np.int64), "5"),
        (np.zeros(2, dtype=np.int64), "2-D"),
        (np.array([[0, 1], [2, 999]]), "row 1"),
        (np.array([[0, -1]]), "row 0"),
        (np.zeros((0, 2), dtype=np.int64), "no rows"),
    ],
)
def test_decode_rejects_bad_tokens(runner, model_dir, tmp_path, tokens, message):
    np.save(tmp_path / "t.npy", tokens)
    res = run(runner, "decode", tmp_path / "t.npy", tmp_path / "out", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 1
    assert message in res.stderr, res.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_decode_refuses_to_overwrite_pngs(runner, model_dir, tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((2, 2), dtype=np.uint8))
    args = ["decode", tmp_path / "t.npy", tmp_path / "out", "--model", model_dir, "--device", "cpu"]
    assert run(runner, *args).exit_code == 0
    res = run(runner, *args)
    assert res.exit_code == 1 and "--overwrite" in res.stderr
    assert run(runner, *args, "--overwrite").exit_code == 0


def test_decode_of_a_non_npy_file(runner, model_dir, tmp_path):
    (tmp_path / "t.npy").write_text("hello")
    res = run(runner, "decode", tmp_path / "t.npy", tmp_path / "out", "--model", model_dir)
    assert res.exit_code == 1 and "t.npy" in res.stderr


def test_cuda_without_gpu_is_a_clear_error(runner, model_dir, image_dir, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    res = run(runner, "encode", image_dir, tmp_path / "t.npy", "--model", model_dir, "--device", "cuda")
    assert res.exit_code == 1 and "CUDA" in res.stderr


@pytest.mark.slow
def test_killed_encode_leaves_no_output(model_dir, tmp_path):
    """SIGKILL in the middle of `mvq encode` leaves no tokens file, no manifest and no temp file (only the
    batches done, for --resume)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3000):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    out = tmp_path / "out" / "tokens.npy"
    args = [sys.executable, "-m", "tokenizer_cli", "encode", str(folder), str(out), "--model", str(model_dir),
            "--device", "cpu", "--batch-size", "16"]
    proc = subprocess.Popen(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True)
    line = ""
    while "encode" not in line and proc.poll() is None:  # wait until encoding has started
        line = proc.stderr.readline()
    time.sleep(0.5)
    assert proc.poll() is None, "encode finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    leftovers = sorted(p.name for p in out.parent.iterdir()) if out.parent.exists() else []
    # no output, no temp file; at most the batches done, whole, and the claim's lock file (a SIGKILL cannot remove
    # it; it holds no lock once the process is gone, and the next run reuses it)
    assert set(leftovers) <= {".tokens.npy.partial", ".tokens.npy.lock"}, leftovers
    if ".tokens.npy.partial" in leftovers:  # whole batches, and the temp file of the one being written, if the kill came then
        kept = [p.name for p in (out.parent / ".tokens.npy.partial").iterdir()]
        assert all(n == "key.json" or re.fullmatch(r"\.?rows-\d+-\d+\.npz(\.tmp-\d+)?", n) for n in kept), kept
    proc = subprocess.run(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr  # a new run is not refused by the lock file left behind
    assert out.exists() and not (out.parent / ".tokens.npy.lock").exists()


def test_sampled_masks_make_decoding_exact_and_draws_follow_the_seed(runner, model_dir, image_dir, tmp_path):
    from tokenizer_cli.data import load_image
    from tokenizer_cli.pipeline import load_pipeline
    import torch

    out = tmp_path / "t.npy"
    assert run(runner, "encode", image_dir / "a.png", out, "--model", model_dir, "--device", "cpu").exit_code == 0
    pipe = load_pipeline(str(model_dir))
    x = torch.from_numpy(load_image(image_dir / "a.png", 28, 1))[None]
    with torch.no_grad():
        direct = pipe.tokenizer(x)[0].clamp(-1, 1)  # eval mode: the nearest hypothesis, as encoding stored it
    decoded = {}
    for name, extra in (("stored", []), ("seed1", ["--ignore-masks", "--seed", "1"]),
                        ("seed1b", ["--ignore-masks", "--seed", "1"]), ("seed2", ["--ignore-masks", "--seed", "2"])):
        res = run(runner, "decode", out, tmp_path / name, "--model", model_dir, "--device", "cpu", *extra)
        assert res.exit_code == 0, res.output
        decoded[name] = np.asarray(Image.open(tmp_path / name / "a.png")).astype(float) / 127.5 - 1
    assert np.abs(decoded["stored"] - direct[0, 0].numpy()).max() < 0.01
    assert np.array_equal(decoded["seed1"], decoded["seed1b"])
    assert not np.array_equal(decoded["seed1"], decoded["seed2"])


def test_tokens_never_meet_another_tokenizer_silently(runner, model_dir, image_dir, tmp_path):
    from conftest import tiny_tokenizer
    from tokenizer_cli.hub import save_pipeline

    other = save_pipeline(tmp_path / "other", tiny_tokenizer("vq"))
    out = tmp_path / "t.npy"
    assert run(runner, "encode", image_dir, out, "--model", model_dir, "--device", "cpu").exit_code == 0
    res = run(runner, "decode", out, tmp_path / "d", "--model", other, "--device", "cpu")
    assert res.exit_code == 1 and "was written by tokenizer" in res.stderr and str(other) in res.stderr
    assert not (tmp_path / "d").exists()
    res = run(runner, "decode", out, tmp_path / "d", "--model", other, "--device", "cpu", "--force")
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "t.json").read_text())
    manifest["rows"] = 3  # the manifest of another run beside these tokens
    (tmp_path / "t.json").write_text(json.dumps(manifest))
    res = run(runner, "decode", out, tmp_path / "d2", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 1 and "do not belong together" in res.stderr


def test_decode_without_model_uses_the_model_the_manifest_names(runner, model_dir, image_dir, tmp_path):
    out = tmp_path / "t.npy"
    assert run(runner, "encode", image_dir, out, "--model", model_dir, "--device", "cpu").exit_code == 0
    res = run(runner, "decode", out, tmp_path / "named", "--device", "cpu")  # no --model: the tiny model, not the default
    assert res.exit_code == 0, res.output
    assert f"model {model_dir} (named in {tmp_path / 't.json'})" in res.stderr
    res = run(runner, "decode", out, tmp_path / "given", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 0, res.output
    for png in sorted((tmp_path / "given").glob("*.png")):
        assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(tmp_path / "named" / png.name)))
    res = run(runner, "decode", out, tmp_path / "other", "--model", "mvq-fmnist-t5", "--device", "cpu")
    assert res.exit_code == 1 and "was written by tokenizer" in res.stderr  # --model overrides, still checked
    manifest = json.loads((tmp_path / "t.json").read_text())
    (tmp_path / "t.json").write_text(json.dumps({**manifest, "model": str(tmp_path / "gone")}))
    res = run(runner, "decode", out, tmp_path / "gone", "--device", "cpu")
    assert res.exit_code == 1 and "t.json names: pass --model" in res.stderr


def test_decoded_pngs_are_named_after_their_sources_and_collisions_numbered(runner, model_dir, tmp_path):
    rng = np.random.default_rng(1)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(tmp_path / folder / "boot.png")
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(tmp_path / "b" / "boot-2.png")
    out = tmp_path / "t.npy"
    res = run(runner, "encode", tmp_path / "a", tmp_path / "b", out, "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 0, res.output
    res = run(runner, "decode", out, tmp_path / "d", "--device", "cpu")
    assert res.exit_code == 0, res.output
    # manifest order: a/boot.png, b/boot-2.png, b/boot.png; the second boot.png is numbered past boot-2.png
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["boot-2.png", "boot-3.png", "boot.png"]
    from tokenizer_cli import Pipeline

    pipe = Pipeline.from_token_file(out, device="cpu")
    rows = pipe.decode(np.load(out), np.load(tmp_path / "t.masks.npy"), output="numpy")
    for row, name in enumerate(["boot.png", "boot-2.png", "boot-3.png"]):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "d" / name)), rows[row])
    paths = pipe.decode_file(out, tmp_path / "api")  # the Python API names them alike
    assert [p.name for p in paths] == ["boot.png", "boot-2.png", "boot-3.png"]
    assert all(np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(tmp_path / "d" / p.name)))
               for p in paths)
