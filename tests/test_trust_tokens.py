"""Trust: tokens never meet the wrong model, bad model folders fail before anything is allocated, and two
processes writing one output cannot leave files of different runs side by side."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from tokenizer_cli.cli.app import app


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("field,value", [("mask_bits", 40), ("res_blocks", 10_000_000), ("num_codes", -3),
                                         ("image_size", "28"), ("kind", "pq"), ("tokens", 0)])
def test_a_bad_config_value_is_one_line_naming_the_file_and_the_field(model_dir, image_dir, tmp_path, field, value):
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    target = cfg["tokenizer"]["quantizer"] if field in ("mask_bits", "num_codes", "kind") else cfg["tokenizer"]
    target[field] = value
    (bad / "config.json").write_text(json.dumps(cfg))
    res = run("encode", image_dir, tmp_path / "t.npy", "--model", bad, "--device", "cpu")
    assert res.exit_code == 1
    (line,) = error_lines(res.stderr)
    assert line.startswith("Error:") and "config.json" in line and field.replace("_", "") in line.replace("_", "")


def test_unknown_config_keys_are_ignored_with_a_warning(model_dir, image_dir, tmp_path):
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["tokenizer"]["from_the_future"] = 1
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning, match="from_the_future"):
        from tokenizer_cli import Pipeline

        Pipeline.from_pretrained(model_dir, device="cpu")
    assert run("encode", image_dir, tmp_path / "t.npy", "--model", model_dir, "--device", "cpu").exit_code == 0


def test_nan_weights_are_refused(model_dir, image_dir, tmp_path):
    state = load_file(model_dir / "tokenizer.safetensors")
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key][0] = float("nan")
    save_file(state, model_dir / "tokenizer.safetensors")
    res = run("encode", image_dir, tmp_path / "t.npy", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 1 and "NaN" in res.stderr and key in res.stderr


def test_a_prior_that_does_not_fit_its_tokenizer_is_refused(model_with_prior, image_dir, tmp_path):
    cfg = json.loads((model_with_prior / "config.json").read_text())
    cfg["prior"]["vocab_size"] = 7
    (model_with_prior / "config.json").write_text(json.dumps(cfg))
    res = run("sample", "--model", model_with_prior, "--out", tmp_path / "s.png", "--device", "cpu")
    assert res.exit_code == 1 and "the AR prior models" in res.stderr


@pytest.mark.slow
def test_two_processes_writing_one_output_leave_one_whole_run(model_dir, tmp_path):
    """Two real `mvq encode` processes race for OUT.npy: one wins, the other is refused, and the tokens,
    masks and manifest on disk all belong to the winner."""
    from PIL import Image

    for name, n in (("a", 19), ("b", 20)):
        folder = tmp_path / name
        folder.mkdir()
        rng = np.random.default_rng(n)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    out = tmp_path / "out.npy"
    cmd = [sys.executable, "-m", "tokenizer_cli", "encode", "--model", str(model_dir), "--device", "cpu"]
    for attempt in range(3):  # start both at once, a few times over
        for p in tmp_path.glob("out*"):
            p.unlink()
        procs = [subprocess.Popen([*cmd, str(tmp_path / name), str(out)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
        results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        codes = sorted(rc for rc, _ in results)
        assert codes in ([0, 1], [0, 0]), results
        if codes == [0, 0]:
            continue  # one finished before the other began: not a race this time
        loser = next(err for rc, err in results if rc == 1)
        assert "already exists" in loser or "another mvq encode is writing it now" in loser, loser
        manifest = json.loads((tmp_path / "out.json").read_text())
        tokens, masks = np.load(out), np.load(tmp_path / "out.masks.npy")
        assert manifest["rows"] == len(tokens) == len(masks) == len(manifest["sources"])
        assert {s.split("/")[-2] for s in manifest["sources"]} in ({"a"}, {"b"})
        assert not list(tmp_path.glob(".out*"))  # no temp files left
        return
    pytest.skip("the two processes never overlapped")


def test_an_encode_into_an_output_another_run_is_writing_is_refused_and_touches_nothing(model_dir, tmp_path):
    """While one run holds OUT (here: this test holds its claim), a second `mvq encode` into it is refused in
    one line and writes nothing, not even the folder of kept batches; the claim's lock file goes with it."""
    from PIL import Image

    from tokenizer_cli import files
    from tokenizer_cli.partial import partial_folder

    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(3):
        Image.fromarray(np.full((28, 28), 40 * i, dtype=np.uint8)).save(pics / f"{i}.png")
    out = tmp_path / "out.npy"
    args = ["encode", "--model", str(model_dir), "--device", "cpu", str(pics), str(out)]
    with files.output_claimed(out, "mvq encode"):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1
        assert "another mvq encode is writing it now" in result.output
        assert "Traceback" not in result.output
        assert not out.exists() and not partial_folder(out).exists()
    assert not list(tmp_path.glob(".out*"))  # the claim is released and its lock file gone
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.exists() and not list(tmp_path.glob(".out*"))


def test_a_lock_file_a_killed_run_left_is_reused_and_a_foreign_one_is_left_alone(tmp_path):
    import os

    from tokenizer_cli import files

    out = tmp_path / "out.npy"
    lock = tmp_path / ".out.npy.lock"
    lock.write_text("")  # as a process killed with SIGKILL leaves it: a file, no lock held
    with files.output_claimed(out):
        assert lock.exists()
        lock.unlink()  # removed by hand while we hold it, and another run makes a new one
        lock.write_text("")
        other = os.stat(lock).st_ino
    assert lock.exists() and os.stat(lock).st_ino == other  # ours went, theirs stays
    lock.unlink()
    with files.output_claimed(out):
        pass
    assert not lock.exists()
