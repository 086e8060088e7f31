"""Ctrl-C prints what was kept, and `mvq encode --resume` continues an interrupted run to the same files."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import run_interrupted_at_step
from tokenizer_cli.cli.app import app
from tokenizer_cli.partial import PartialEncode, partial_folder


def run(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def write_images(folder, n):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return folder


def outputs_equal(a, b):
    """Two `mvq encode` outputs hold the same tokens, masks and manifest (but for the time it was written)."""
    for suffix in (".npy", ".masks.npy"):
        assert a.with_suffix(suffix).read_bytes() == b.with_suffix(suffix).read_bytes()
    ma, mb = (json.loads(p.with_suffix(".json").read_text()) for p in (a, b))
    ma.pop("created"), mb.pop("created")
    assert ma == mb


def encode_args(folder, out, model_dir, *extra):
    return ["encode", folder, out, "--model", model_dir, "--device", "cpu", "--batch-size", "8", *extra]


def encode_interrupted(runner, monkeypatch, args, after=24):
    """Run `mvq encode args`, stopped by Ctrl-C (in this process) once `after` images are kept."""
    save = PartialEncode.save

    def save_then_interrupt(self, batch):
        save(self, batch)
        if self.done == after:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(PartialEncode, "save", save_then_interrupt)
        return run(runner, *args)


@pytest.fixture
def interrupted(runner, model_dir, tmp_path, monkeypatch):
    """An `mvq encode` of 40 images stopped by Ctrl-C after 3 batches of 8 (in this process)."""
    folder = write_images(tmp_path / "imgs", 40)
    out = tmp_path / "out" / "tokens.npy"
    return folder, out, encode_interrupted(runner, monkeypatch, encode_args(folder, out, model_dir))


def test_ctrl_c_says_what_was_kept_and_resume_gives_the_same_files(runner, model_dir, tmp_path, interrupted,
                                                                   monkeypatch):
    folder, out, res = interrupted
    assert res.exit_code == 130
    assert res.stderr.splitlines()[-1] == (f"Interrupted: 24 of 40 images encoded are kept in {partial_folder(out)}; rerun "
                                  "the same command with --resume to continue; no output was written")
    assert sorted(p.name for p in out.parent.iterdir()) == [".tokens.npy.partial"]  # no output, no temp file

    import tokenizer_cli.inference as inference

    starts = []
    iter_encoded = inference.iter_encoded
    monkeypatch.setattr(inference, "iter_encoded", lambda *a, start, **k: starts.append(start) or iter_encoded(*a, start=start, **k))
    res = run(runner, *encode_args(folder, out, model_dir, "--resume"))
    assert res.exit_code == 0, res.output
    assert starts == [24]  # it continued, it did not start over
    assert "resuming: 24 of 40 images were encoded by the interrupted run" in res.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["tokens.json", "tokens.masks.npy", "tokens.npy"]

    whole = tmp_path / "whole" / "tokens.npy"
    assert run(runner, *encode_args(folder, whole, model_dir)).exit_code == 0
    outputs_equal(out, whole)


def test_ctrl_c_before_the_first_batch_leaves_nothing_behind(runner, model_dir, tmp_path, monkeypatch):
    import tokenizer_cli.inference as inference

    folder = write_images(tmp_path / "imgs", 16)
    out = tmp_path / "out" / "tokens.npy"

    def interrupt_at_once(*args, **kwargs):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(inference, "iter_encoded", interrupt_at_once)
    res = run(runner, *encode_args(folder, out, model_dir))
    assert res.exit_code == 130
    assert res.stderr.splitlines()[-1] == "Interrupted: no image was encoded yet, nothing is kept; no output was written"
    assert list(out.parent.iterdir()) == []  # no hidden folder of the run's key either


def test_resume_with_other_inputs_or_options_is_refused(runner, model_dir, tmp_path, interrupted):
    folder, out, _ = interrupted
    res = run(runner, *encode_args(folder, out, model_dir, "--resume", "--batch-size", "4"))
    assert res.exit_code == 1 and res.stderr.count("\n") == 1
    assert "other --batch-size, so it cannot be resumed" in res.stderr
    os.utime(folder / "00003.png", ns=(0, 0))  # the same names, but a file changed since
    res = run(runner, *encode_args(folder, out, model_dir, "--resume"))
    assert res.exit_code == 1 and "other inputs" in res.stderr
    (folder / "00000.png").unlink()
    res = run(runner, *encode_args(folder, out, model_dir, "--resume"))
    assert res.exit_code == 1 and "other inputs" in res.stderr
    assert len(list(partial_folder(out).glob("rows-*.npz"))) == 3  # refused runs keep the state


def test_resume_with_fit_pad_gives_the_files_and_the_warning_of_a_whole_run(runner, model_dir, tmp_path,
                                                                          monkeypatch):
    """--fit is part of what a resumed run must match, and the picture warning after a resumed run counts the
    pictures of the batches kept as well: colour 40x20 pictures padded (not enlarged) into a 28x28 grey model."""
    folder = tmp_path / "wide"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (20, 40, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    out, whole = tmp_path / "out" / "tokens.npy", tmp_path / "whole" / "tokens.npy"
    res = encode_interrupted(runner, monkeypatch, encode_args(folder, out, model_dir, "--fit", "pad"))
    assert res.exit_code == 130 and "24 of 40 images encoded are kept" in res.stderr
    res = run(runner, *encode_args(folder, out, model_dir, "--resume", "--fit", "crop"))
    assert res.exit_code == 1 and "other --fit, so it cannot be resumed" in res.stderr

    res = run(runner, *encode_args(folder, out, model_dir, "--resume", "--fit", "pad"))
    assert res.exit_code == 0, res.output
    assert "warning: all 40 pictures are colour" in res.stderr and "enlarged" not in res.stderr
    uninterrupted = run(runner, *encode_args(folder, whole, model_dir, "--fit", "pad"))
    assert uninterrupted.exit_code == 0 and uninterrupted.stderr.count("warning:") == 1
    warning_line = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert warning_line == [line for line in uninterrupted.stderr.splitlines() if line.startswith("warning:")]
    outputs_equal(out, whole)
    assert json.loads(out.with_suffix(".json").read_text())["fit"] == "pad"
    cropped = run(runner, *encode_args(folder, tmp_path / "crop" / "tokens.npy", model_dir, "--fit", "crop"))
    assert "smaller than 28x28 (the smallest 40x20), so enlarged" in cropped.stderr  # the tally follows --fit


def test_a_damaged_kept_batch_is_one_line(runner, model_dir, interrupted):
    folder, out, _ = interrupted
    sorted(partial_folder(out).glob("rows-*.npz"))[1].write_bytes(b"PK\x03\x04 not a zip")
    res = run(runner, *encode_args(folder, out, model_dir, "--resume"))
    assert res.exit_code == 1 and res.stderr.splitlines()[-1].startswith(f"Error: {partial_folder(out)}/rows-")
    assert "a kept batch cannot be read" in res.stderr and "Traceback" not in res.output


def test_without_resume_a_run_starts_over_and_says_so(runner, model_dir, tmp_path, interrupted):
    folder, out, _ = interrupted
    res = run(runner, *encode_args(folder, out, model_dir))
    assert res.exit_code == 0, res.output
    assert "the 24 images an interrupted run had encoded are discarded" in res.stderr
    assert not partial_folder(out).exists()


def test_resume_with_nothing_to_resume(runner, model_dir, image_dir, tmp_path):
    res = run(runner, "encode", image_dir, tmp_path / "t.npy", "--model", model_dir, "--resume")
    assert res.exit_code == 1 and "nothing to resume" in res.stderr and res.stderr.count("\n") == 1


def test_ctrl_c_before_any_output_says_nothing_partial_was_left(runner, model_dir, image_dir, tmp_path, monkeypatch):
    import tokenizer_cli.cli.decode as decode

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(decode, "read_token_file", interrupt)
    res = run(runner, "decode", tmp_path / "t.npy", tmp_path / "out", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 130
    assert res.stderr == "Interrupted: outputs are written whole or not at all, so nothing partial was left\n"


@pytest.mark.slow
def test_sigint_to_a_running_encode_then_resume(runner, model_dir, tmp_path):
    """A real SIGINT to `python -m tokenizer_cli encode` in the middle of its work: one line, exit 130, no
    output; `--resume` then writes the files an uninterrupted run writes."""
    folder = write_images(tmp_path / "imgs", 1500)
    out = tmp_path / "out" / "tokens.npy"
    args = [sys.executable, "-m", "tokenizer_cli", *map(str, encode_args(folder, out, model_dir))]
    # SIGINT as a terminal delivers it: a suite started in the background (`pytest &`) passes SIGINT on ignored,
    # and an ignored Ctrl-C rightly interrupts nothing
    proc = subprocess.Popen(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while len(list(partial_folder(out).glob("rows-*.npz"))) < 2 and proc.poll() is None:  # some batches done
        assert time.monotonic() < deadline, "encode made no progress"
        time.sleep(0.02)
    assert proc.poll() is None, "encode finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = [line for line in stderr.splitlines() if line.startswith("Interrupted:")]
    assert len(lines) == 1 and "of 1,500 images encoded are kept in" in lines[0] and "--resume" in lines[0]
    assert "Traceback" not in stderr
    assert sorted(p.name for p in out.parent.iterdir()) == [".tokens.npy.partial"]
    kept = int(lines[0].split("Interrupted: ")[1].split(" of")[0].replace(",", ""))
    assert 16 <= kept < 1500

    res = run(runner, *encode_args(folder, out, model_dir, "--resume"))
    assert res.exit_code == 0, res.output
    whole = tmp_path / "whole" / "tokens.npy"
    assert run(runner, *encode_args(folder, whole, model_dir)).exit_code == 0
    outputs_equal(out, whole)
    assert not partial_folder(out).exists()


def test_ctrl_c_in_training_names_the_checkpoint_kept(runner, tmp_path, monkeypatch):

    folder = write_images(tmp_path / "imgs", 16)
    out = tmp_path / "model"
    args = ["train", "tokenizer", out, "--data", folder, "--quantizer", "vq", "--codebook-size", "4", "--dim", "4",
            "--base-channels", "4", "--steps", "6", "--batch-size", "8", "--checkpoint-every", "2", "--device", "cpu"]
    res = run_interrupted_at_step(monkeypatch, lambda: run(runner, *args), "mse", 2)
    assert res.exit_code == 130
    assert res.stderr.splitlines()[-1] == (f"Interrupted: the checkpoint of step 2 is kept in {out / 'checkpoints'}; "
                                           "rerun the same command with --resume to continue from it; the model "
                                           f"folder {out} was not written")
    res = run(runner, *args, "--resume")
    assert res.exit_code == 0, res.output
    assert (out / "tokenizer.safetensors").is_file()


def test_ctrl_c_inside_a_deferred_write_arrives_after_it():
    """A Ctrl-C that lands while np.savez builds its ZipFile must not break it (its destructor printed a
    traceback when interrupted half-built): the interrupt waits for the end of the block."""
    import os
    import signal

    from tokenizer_cli.files import interrupts_deferred

    done = []
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal's Ctrl-C (`pytest &`: ignored)
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                done.append("written")
    finally:
        signal.signal(signal.SIGINT, before)
    assert done == ["written"]
