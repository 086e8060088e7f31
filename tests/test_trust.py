"""The "Trust" issue: a user's files are never deleted or replaced without consent, IDX headers are not
trusted, every operating-system failure is one `Error:` line naming the path, and the network can fail but
never hang. Real files, real folders, real sockets; no network beyond 127.0.0.1."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tokenizer_cli import data as data_io
from tokenizer_cli.classifier import Classifier, ClassifierConfig, save_classifier
from tokenizer_cli.cli.app import app

REPO = Path(__file__).resolve().parents[1]
TINY = ["--quantizer", "vq", "--dim", "4", "--codebook-size", "8", "--tokens", "2", "--base-channels", "4",
        "--batch-size", "8", "--device", "cpu"]


def run(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(stderr: str) -> str:
    """The command's one `Error:` line (progress lines may precede it); fails on a traceback or two errors."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    assert stderr.rstrip().splitlines()[-1] == errors[0], stderr  # nothing after it
    return errors[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under folder with its content hash: equal snapshots = nothing deleted, added or changed."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def image_folder(folder: Path, n: int = 16, size: int = 16) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture
def feature_net(tmp_path):
    torch.manual_seed(0)
    return save_classifier(tmp_path / "fnet", Classifier(ClassifierConfig(width=4)),
                           {"test_accuracy": 0.5, "fd_train_vs_test": 0.25})


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write into, even root: a read-only bind mount (root), else chmod 555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "kept.txt").write_text("mine")
    mounted = False
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)],
                                 capture_output=True).returncode == 0
    else:
        folder.chmod(0o555)
    try:
        try:
            (folder / "probe").write_text("x")
            pytest.skip("cannot make a read-only folder here")
        except OSError:
            pass
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
        folder.chmod(0o755)


def _drop_dac() -> None:
    """In the child: root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH obeys file modes like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone from the bounding set, so after exec too
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def mvq_unprivileged(*args, timeout=120) -> subprocess.CompletedProcess:
    """`python -m tokenizer_cli ARGS` in a process for which chmod 000 really means unreadable."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tokenizer_cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=_drop_dac if os.geteuid() == 0 else None)


# ---------------------------------------------------------------- 1. files are never replaced without consent


def test_overwrite_refuses_a_folder_that_is_not_a_model(runner, tmp_path):
    """`cp -r examples/fashion photos && mvq train tokenizer photos --data photos --overwrite` used to delete photos/."""
    photos = tmp_path / "photos"
    shutil.copytree(REPO / "examples" / "fashion", photos)
    before = snapshot(photos)
    res = run(runner, "train", "tokenizer", photos, "--data", photos, "--overwrite", "--steps", 1, *TINY)
    assert res.exit_code == 1
    assert "not a model folder" in error_line(res.stderr)
    assert snapshot(photos) == before and len(before) == 20


@pytest.mark.parametrize("bad", [["--data", "MISSING"], ["--data", "EMPTY"], ["--quantizer", "fsq", "--levels", "8,x"],
                                 ["--precision", "fp8"], ["--layout", "grid", "--tokens", "5"]])
def test_overwrite_checks_every_option_before_touching_the_model(runner, model_with_prior, tmp_path, bad):
    (tmp_path / "empty").mkdir()
    images = image_folder(tmp_path / "imgs")
    bad = [str(tmp_path / "nope") if b == "MISSING" else str(tmp_path / "empty") if b == "EMPTY" else b for b in bad]
    before = snapshot(model_with_prior)
    res = run(runner, "train", "tokenizer", model_with_prior, "--overwrite", "--data", images, "--steps", 1,
              "--image-size", 16, *TINY, *bad)  # the bad option comes last, so it wins over the good one
    assert res.exit_code == 1
    error_line(res.stderr)
    assert "train tokenizer" not in res.stderr
    assert snapshot(model_with_prior) == before


def test_overwrite_swaps_a_whole_new_model_in(runner, model_with_prior, tmp_path):
    cfg = json.loads((model_with_prior / "config.json").read_text())
    cfg["eval"] = {"mse": 0.5}
    (model_with_prior / "config.json").write_text(json.dumps(cfg))
    images = image_folder(tmp_path / "imgs")
    res = run(runner, "train", "tokenizer", model_with_prior, "--data", images, "--overwrite", "--steps", 2,
              "--image-size", 16, *TINY)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in model_with_prior.iterdir()) == ["README.md", "config.json", "tokenizer.safetensors"]
    new = json.loads((model_with_prior / "config.json").read_text())
    assert new["prior"] is None and "eval" not in new and new["tokenizer"]["image_size"] == 16  # the old prior is gone
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name] == []
    assert model_with_prior.stat().st_mode & 0o755 == 0o755 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failed_final_write_leaves_the_old_model(runner, model_with_prior, tmp_path, monkeypatch):
    """Disk full while the new model is written: the old model stays whole, the temporary folder goes."""
    from tokenizer_cli.cli import train as train_cli

    def full_disk(folder, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(folder) / "tokenizer.safetensors"))

    monkeypatch.setattr(train_cli, "save_pipeline", full_disk)
    before = snapshot(model_with_prior)
    res = run(runner, "train", "tokenizer", model_with_prior, "--data", image_folder(tmp_path / "imgs"), "--overwrite",
              "--steps", 2, "--image-size", 16, *TINY)
    assert res.exit_code == 1
    line = error_line(res.stderr)
    assert "No space left on device" in line and "tokenizer.safetensors" in line
    assert {k: v for k, v in snapshot(model_with_prior).items() if not k.startswith("checkpoints/")} == before
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name] == []


def test_resume_without_a_checkpoint_refuses(runner, model_with_prior, tmp_path):
    before = snapshot(model_with_prior)
    res = run(runner, "train", "tokenizer", model_with_prior, "--data", image_folder(tmp_path / "imgs"), "--resume",
              "--steps", 2, "--image-size", 16, *TINY)
    assert res.exit_code == 1 and "nothing to resume" in error_line(res.stderr)
    assert snapshot(model_with_prior) == before


def test_train_prior_replaces_a_prior_only_with_overwrite(runner, model_with_prior, image_dir, tmp_path):
    assert run(runner, "encode", image_dir, tmp_path / "t.npy", "--model", model_with_prior, "--device", "cpu").exit_code == 0
    args = ["train", "prior", model_with_prior, "--tokens-file", tmp_path / "t.npy", "--steps", 2, "--layers", 1,
            "--heads", 2, "--width", 16, "--batch-size", 4, "--device", "cpu"]
    before = snapshot(model_with_prior)
    res = run(runner, *args)
    assert res.exit_code == 1 and "--overwrite" in error_line(res.stderr)
    res = run(runner, *args, "--resume")
    assert res.exit_code == 1 and "nothing to resume" in error_line(res.stderr)
    assert snapshot(model_with_prior) == before
    res = run(runner, *args, "--overwrite")
    assert res.exit_code == 0, res.output
    after = snapshot(model_with_prior)
    assert after["prior.safetensors"] != before["prior.safetensors"] and after["tokenizer.safetensors"] == before["tokenizer.safetensors"]


def test_eval_never_writes_into_shipped_models_nor_from_a_limit(runner, model_dir, image_dir, feature_net, tmp_path,
                                                               monkeypatch):
    from tokenizer_cli import hub

    weights = tmp_path / "site-packages" / "weights"
    shutil.copytree(model_dir, weights / "tiny-default")
    monkeypatch.setattr(hub, "shipped_root", lambda: weights)
    shipped = snapshot(weights)
    common = ["--data", image_dir, "--feature-net", feature_net, "--device", "cpu", "--batch-size", 3]
    for name in ("tiny-default", weights / "tiny-default"):  # by its shipped name, and by its path
        res = run(runner, "eval", "--model", name, *common)
        assert res.exit_code == 0, res.output
        assert "shipped model" in res.stderr
    assert snapshot(weights) == shipped

    local = snapshot(model_dir)
    res = run(runner, "eval", "--model", model_dir, *common, "--limit", 2, "--json", tmp_path / "e.json")
    assert res.exit_code == 0, res.output
    assert "--limit 2" in res.stderr and "nothing is written" in res.stderr
    assert snapshot(model_dir) == local and json.loads((tmp_path / "e.json").read_text())["images"] == 2
    res = run(runner, "eval", "--model", model_dir, *common)  # the whole data, a folder the user named: written
    assert res.exit_code == 0 and json.loads((model_dir / "config.json").read_text())["eval"]["images"] == 4


# ---------------------------------------------------------------- 2. IDX headers are checked before allocating


def _lying_idx(path: Path, gz: bool = False) -> Path:
    import gzip

    raw = struct.pack(">IIII", 0x803, 2**31, 28, 28) + bytes(3 * 784)  # 2.4 KB claiming 2^31 rows
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_idx_header_claiming_2_31_rows_is_refused_without_allocating(runner, model_dir, tmp_path, gz):
    import tracemalloc

    idx = _lying_idx(tmp_path / "train-images-idx3-ubyte", gz)
    tracemalloc.start()
    try:
        with pytest.raises(data_io.InputError, match="IDX header says 2147483648 x 28 x 28") as info:
            data_io.read_idx_images(idx)
        first = next(iter(data_io.iter_sources([idx])))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(idx) in str(info.value) and first.error is not None and peak < 5_000_000
    res = run(runner, "encode", idx, tmp_path / "t.npy", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 1
    line = error_line(res.stderr)
    assert str(idx) in line and "2147483648" in line and not (tmp_path / "t.npy").exists()


# ---------------------------------------------------------------- 3. OS failures: one line naming the path


@pytest.mark.parametrize("command", ["encode", "decode", "sample", "train", "eval-json", "eval-into"])
def test_read_only_output_folder_is_refused_before_the_work(runner, read_only_dir, model_with_prior, image_dir,
                                                            feature_net, tmp_path, command):
    ro = read_only_dir
    np.save(tmp_path / "t.npy", np.zeros((3, 2), dtype=np.int64))
    model = model_with_prior
    if command == "eval-into":  # the model folder itself is read-only
        shutil.copytree(model_with_prior, ro.parent / "m")
        subprocess.run(["mount", "--bind", "-o", "ro", str(ro.parent / "m"), str(ro.parent / "m")], check=True) \
            if os.geteuid() == 0 else (ro.parent / "m").chmod(0o555)
        model = ro.parent / "m"
    args = {
        "encode": ["encode", image_dir, ro / "t.npy", "--model", model],
        "decode": ["decode", tmp_path / "t.npy", ro / "pngs", "--model", model],
        "sample": ["sample", "--n", 2, "--out", ro / "s.png", "--model", model],
        "train": ["train", "tokenizer", ro / "new-model", "--data", image_dir, "--steps", 1, *TINY[:-2]],
        "eval-json": ["eval", "--model", model, "--data", image_dir, "--feature-net", feature_net, "--json", ro / "e.json"],
        "eval-into": ["eval", "--model", model, "--data", image_dir, "--feature-net", feature_net],
    }[command]
    try:
        res = run(runner, *args, "--device", "cpu")
    finally:
        if command == "eval-into":
            subprocess.run(["umount", str(model)]) if os.geteuid() == 0 else model.chmod(0o755)
    assert res.exit_code == 1
    line = error_line(res.stderr)
    assert str(ro if command != "eval-into" else model) in line
    assert "read-only file system" in line or "permission denied" in line
    assert "reconstruct" not in res.stderr and "train tokenizer" not in res.stderr  # refused before the work
    assert sorted(p.name for p in ro.iterdir()) == ["kept.txt"]


def test_output_that_is_a_folder_or_under_a_file(runner, model_with_prior, image_dir, feature_net, tmp_path):
    (tmp_path / "dir.npy").mkdir()
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "file.txt").write_text("x")
    np.save(tmp_path / "t.npy", np.zeros((3, 2), dtype=np.int64))
    cases = [
        (["encode", image_dir, tmp_path / "dir.npy", "--overwrite"], "dir.npy: is a folder"),
        (["sample", "--n", 2, "--out", tmp_path / "dir.png", "--overwrite"], "dir.png: is a folder"),
        (["decode", tmp_path / "t.npy", "--grid", tmp_path / "dir.png", "--overwrite"], "dir.png: is a folder"),
        (["eval", "--data", image_dir, "--feature-net", feature_net, "--json", tmp_path / "dir.png"], "dir.png: is a folder"),
        (["encode", image_dir, tmp_path / "file.txt" / "t.npy"], "file.txt is a file, not a folder"),
        (["decode", tmp_path / "t.npy", tmp_path / "file.txt" / "pngs"], "file.txt is a file, not a folder"),
    ]
    for args, expected in cases:
        res = run(runner, *args, "--model", model_with_prior, "--device", "cpu")
        assert res.exit_code == 1, args
        assert expected in error_line(res.stderr), (args, res.stderr)
    res = run(runner, "encode", image_dir, tmp_path / "new" / "sub" / "t.npy", "--model", model_with_prior,
              "--device", "cpu")  # a missing output folder is created
    assert res.exit_code == 0 and np.load(tmp_path / "new" / "sub" / "t.npy").shape == (4, 2)


def test_unreadable_subfolder_is_skipped_and_listed(model_dir, image_dir, tmp_path):
    locked = image_dir / "locked"
    locked.mkdir()
    Image.new("L", (28, 28)).save(locked / "z.png")
    locked.chmod(0)
    try:
        # a process like the one below cannot list it (else the test would prove nothing)
        if subprocess.run([sys.executable, "-c", f"import os; os.listdir({str(locked)!r})"], capture_output=True,
                          preexec_fn=_drop_dac if os.geteuid() == 0 else None).returncode == 0:
            pytest.skip("this process can read a chmod 000 folder")
        out = tmp_path / "t.npy"
        res = mvq_unprivileged("encode", image_dir, out, "--model", model_dir, "--device", "cpu")
        assert res.returncode == 1
        assert f"{locked}: cannot read this folder (Permission denied)" in error_line(res.stderr)
        res = mvq_unprivileged("encode", image_dir, out, "--model", model_dir, "--device", "cpu", "--skip-bad")
        assert res.returncode == 0, res.stderr
        manifest = json.loads(out.with_suffix(".json").read_text())
        assert np.load(out).shape == (4, 2)
        assert manifest["skipped"] == [{"source": str(locked), "reason": f"{locked}: cannot read this folder (Permission denied)"}]
    finally:
        locked.chmod(0o755)


def test_symlink_loops_and_very_deep_trees(runner, model_dir, image_dir, tmp_path):
    (image_dir / "loop").symlink_to(image_dir)  # a folder inside itself
    (image_dir / "sub" / "up").symlink_to(image_dir / "sub", target_is_directory=True)
    (image_dir / "self.png").symlink_to(image_dir / "self.png")  # a file link to itself
    deep = tmp_path / "deep"
    bottom = deep
    for _ in range(1100):  # deeper than Python's recursion limit, shorter than PATH_MAX
        bottom = bottom / "d"
        bottom.mkdir(parents=True)
    Image.new("L", (28, 28), 128).save(bottom / "bottom.png")
    try:
        out = tmp_path / "t.npy"
        res = run(runner, "encode", image_dir, deep, out, "--model", model_dir, "--device", "cpu", "--skip-bad")
        assert res.exit_code == 0, res.output
        manifest = json.loads(out.with_suffix(".json").read_text())
        names = [s.rsplit("/", 1)[-1] for s in manifest["sources"]]
        assert names == ["a.png", "b.jpg", "c.png", "d.gif", "bottom.png"]  # each image once
        assert [s["source"].rsplit("/", 1)[-1] for s in manifest["skipped"]] == ["self.png"]
        assert manifest["sources"][-1].split("/").count("d") == 1100
    finally:
        (bottom / "bottom.png").unlink()
        while bottom != deep:  # pytest's recursive rmtree would hit the recursion limit on this tree
            bottom.rmdir()
            bottom = bottom.parent


def _interrupted_run(out: Path, images: Path) -> None:
    """A real interrupted `mvq train tokenizer`: checkpoints in OUT/checkpoints, no model yet."""
    from tokenizer_cli.config import QuantizerConfig, TokenizerConfig
    from tokenizer_cli.models import Tokenizer
    from tokenizer_cli.train import TrainConfig, train_tokenizer

    q = QuantizerConfig(kind="vq", dim=4, num_codes=8, mask_bits=4, levels=[8, 6, 5])
    model = Tokenizer(TokenizerConfig(image_size=16, channels=1, tokens=2, base_channels=4, quantizer=q))
    arr = data_io.load_uint8(list(data_io.iter_sources([images])), 16, 1)
    train_tokenizer(model, arr, TrainConfig(steps=2, batch_size=8, checkpoint_every=1), out / "checkpoints",
                    torch.device("cpu"))


@pytest.mark.parametrize("damage", ["truncated", "garbage-json", "missing", "other-architecture"])
def test_resume_from_a_bad_checkpoint_is_one_line(runner, tmp_path, damage):
    images = image_folder(tmp_path / "imgs")
    out = tmp_path / "model"
    _interrupted_run(out, images)
    ckpt = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    opts = ["--steps", 4, "--image-size", 16, *TINY]
    if damage == "truncated":
        data = (ckpt / "trainer.safetensors").read_bytes()
        (ckpt / "trainer.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "garbage-json":
        (ckpt / "trainer.json").write_text("{not json")
    elif damage == "missing":
        (ckpt / "tokenizer.safetensors").unlink()
    else:
        opts[opts.index("--tokens") + 1] = "3"
    before = snapshot(out)
    res = run(runner, "train", "tokenizer", out, "--data", images, "--resume", *opts)
    assert res.exit_code == 1
    line = error_line(res.stderr)
    assert str(ckpt) in line
    assert ("another architecture" if damage == "other-architecture" else "corrupt or incomplete checkpoint") in line
    assert snapshot(out) == before


@pytest.fixture
def full_disk(tmp_path):
    """A real, tiny file system: writes past 16 KiB fail with ENOSPC."""
    folder = tmp_path / "full"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_disk_full_is_one_line_naming_the_file(runner, model_dir, full_disk, tmp_path):
    np.save(tmp_path / "t.npy", np.random.default_rng(0).integers(0, 4, (64, 2)))
    res = run(runner, "decode", tmp_path / "t.npy", "--grid", full_disk / "grid.png", full_disk / "pngs",
              "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 1
    line = error_line(res.stderr)
    assert str(full_disk) in line and "No space left on device" in line


# ---------------------------------------------------------------- 4. the network fails, never hangs


class Server:
    """A real local socket on 127.0.0.1: 'stall' accepts and never answers, 'error' answers HTTP 500,
    'refused' is a port nobody listens on."""

    def __init__(self, mode: str):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        if mode == "refused":
            self.sock.close()
            return
        self.sock.listen(16)
        threading.Thread(target=self._serve, args=(mode,), daemon=True).start()

    def _serve(self, mode: str) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if mode == "error":
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                conn.close()
            # stall: keep the connection open and say nothing

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def _hub_env(tmp_path: Path, url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("HF_")}
    return {**env, "HTTPS_PROXY": url, "HTTP_PROXY": url, "https_proxy": url, "http_proxy": url, "NO_PROXY": "",
            "no_proxy": "", "HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf-home"),
            "HF_HUB_CACHE": str(tmp_path / "hf-cache"), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_TOKEN": "hf_dummy",
            "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["stall", "error", "refused"])
@pytest.mark.parametrize("command", ["encode", "push"])
def test_hub_failures_are_one_line_within_30_seconds(model_dir, image_dir, tmp_path, mode, command):
    server = Server(mode)
    try:
        args = (["encode", image_dir, tmp_path / "t.npy", "--model", "owner/name", "--device", "cpu"]
                if command == "encode" else ["push", model_dir, "owner/name"])
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "tokenizer_cli", *map(str, args)], capture_output=True, text=True,
                             env=_hub_env(tmp_path, f"http://127.0.0.1:{server.port}"), timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        server.close()
    assert res.returncode == 1, res.stderr
    line = error_line(res.stderr)
    assert "owner/name" in line and "offline" not in line
    assert elapsed < 30, f"{elapsed:.0f} s: {line}"
    if mode != "refused":
        assert server.conns, "the command never reached the local server"


def test_offline_message_only_when_offline(model_dir, image_dir, tmp_path):
    env = {**_hub_env(tmp_path, "http://127.0.0.1:9"), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "tokenizer_cli", "encode", str(image_dir), str(tmp_path / "t.npy"),
                          "--model", "owner/name", "--device", "cpu"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert res.returncode == 1 and "offline" in error_line(res.stderr) and "HF_HUB_OFFLINE" in res.stderr
