"""scripts/compare.py: the planned commands of the comparison grid, its skip/resume logic, and its writers.

Fast: nothing is trained; the dry run only prints the `mvq` commands it would run.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_script"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


def dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--dry-run", *args], capture_output=True, text=True,
                          timeout=60)


def options(argv: list[str]) -> dict[str, str]:
    """--name value pairs of a command line (flags without a value map to '')."""
    out = {}
    for i, a in enumerate(argv):
        if a.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else ""
            out[a] = "" if nxt.startswith("--") else nxt
    return out


def planned(stdout: str) -> dict[str, dict[str, list[str]]]:
    """{run folder name: {"tokenizer" | "prior" | "eval": argv}} and the benchmark under key ""."""
    plan: dict[str, dict[str, list[str]]] = {}
    for line in stdout.splitlines():
        if not line or line.startswith("#"):
            continue
        argv = shlex.split(line)
        i = next(k for k, a in enumerate(argv) if a in ("train", "eval", "benchmark"))
        verb = argv[i]
        if verb == "train":
            plan.setdefault(Path(argv[i + 2]).name, {})[argv[i + 1]] = argv
        elif verb == "eval":
            plan.setdefault(Path(options(argv)["--model"]).name, {})["eval"] = argv
        else:
            plan.setdefault("", {})["benchmark"] = argv
    return plan


def test_dry_run_plans_the_whole_grid_with_shared_settings(compare, tmp_path):
    res = dry_run("--out", str(tmp_path / "cmp"), "--seeds", "0", "1", "--steps", "700", "--prior-steps", "900")
    assert res.returncode == 0, res.stderr
    plan = planned(res.stdout)
    specs = compare.grid(28)
    assert len(specs) == 34  # 2 T x 3 K x (MVQ sampled, MVQ joint, VQ same K, VQ and FSQ same vocabulary) + 4
    runs = {f"{s.name}-s{seed}" for s in specs for seed in (0, 1)}
    assert set(plan) - {""} == runs
    for name in runs:
        assert set(plan[name]) == {"tokenizer", "prior", "eval"}, name
        tok = options(plan[name]["tokenizer"])
        assert (tok["--steps"], tok["--batch-size"], tok["--base-channels"]) == ("700", "128", "16")
        assert tok["--seed"] == name.rsplit("-s", 1)[1]
        assert "--overwrite" in tok and "--resume" not in tok  # nothing there yet
        prior = options(plan[name]["prior"])
        assert (prior["--steps"], prior["--layers"], prior["--heads"], prior["--width"]) == ("900", "4", "4", "128")
        assert options(plan[name]["eval"])["--json"].endswith(f"{name}/eval.json")
    bench = plan[""]["benchmark"]
    assert bench.count("--model") == len(runs) and options(bench)["--tokens"] == "2"

    keys_tok = ("--steps", "--batch-size", "--base-channels", "--seed", "--data", "--image-size", "--channels")
    keys_prior = ("--steps", "--layers", "--heads", "--width", "--seed", "--data")
    pairs = compare.comparisons(specs)
    assert {ax for ax, _, _ in pairs} == {"same K", "same vocabulary"}
    # 2 T x 3 K x (sampled vs VQ, joint vs VQ at the same K; joint vs VQ and FSQ at the same vocabulary),
    # and MVQ sampled at T=16 against the 16-token VQ with the same K
    assert len(pairs) == 25
    for axis, m, b in pairs:
        assert m.tokens == b.tokens
        assert (m.K == b.K) if axis == "same K" else (m.vocab == b.vocab)
        for seed in (0, 1):
            pm, pb = plan[f"{m.name}-s{seed}"], plan[f"{b.name}-s{seed}"]
            tm, tb = options(pm["tokenizer"]), options(pb["tokenizer"])
            assert [tm[k] for k in keys_tok] == [tb[k] for k in keys_tok], (m.name, b.name)
            qm, qb = options(pm["prior"]), options(pb["prior"])
            assert [qm[k] for k in keys_prior] == [qb[k] for k in keys_prior], (m.name, b.name)
    # the vocabulary each command asks for
    mvq = options(plan["mvq-k16g4-t5-s0"]["tokenizer"])
    assert (mvq["--quantizer"], mvq["--num-codes"], mvq["--mask-bits"], mvq["--tokens"]) == ("mvq", "16", "4", "5")
    joint = options(plan["mvqj-k64g4-t2-s0"]["tokenizer"])
    assert (joint["--quantizer"], joint["--num-codes"]) == ("mvq-joint", "64")
    assert options(plan["fsq-8x10x12-t2-s0"]["tokenizer"])["--levels"] == "8,10,12"
    assert options(plan["fsq-5x4x3-t2-s1"]["tokenizer"])["--levels"] == "5,4,3"
    grid49 = options(plan["vq-k16-grid49-s0"]["tokenizer"])
    assert (grid49["--layout"], grid49["--tokens"]) == ("grid", "49")
    assert options(plan["vq-k16-grid49-s0"]["prior"])["--batch-size"] == "64"


def test_dry_run_only_resume_skip_and_conflicts(compare, tmp_path):
    out = tmp_path / "cmp"
    interrupted = out / "runs" / "vq-k60-t2-s0" / "checkpoints"
    interrupted.mkdir(parents=True)
    (interrupted / "latest").write_text("step-0000100\n")
    done = out / "runs" / "mvq-k4g4-t2-s0"
    cfg = {"mvq_format": 2, "training": {"steps": 1500, "batch_size": 128, "seed": 0, "data": "fashion-mnist"},
           "metrics": {"mse": 0.1},
           "tokenizer": {"tokens": 2, "layout": "1d", "base_channels": 16, "image_size": 28, "channels": 1,
                         "quantizer": {"kind": "mvq", "num_codes": 4, "mask_bits": 4}}}
    done.mkdir(parents=True)
    (done / "config.json").write_text(json.dumps(cfg))
    (done / "tokenizer.safetensors").write_bytes(b"x")

    res = dry_run("--out", str(out), "--only", "vq-k60-t2", "mvq-k4g4-*", "--eval-limit", "50")
    assert res.returncode == 0, res.stderr
    plan = planned(res.stdout)
    assert set(plan) == {"vq-k60-t2-s0", "mvq-k4g4-t2-s0", "mvq-k4g4-t5-s0", ""}
    assert "--resume" in plan["vq-k60-t2-s0"]["tokenizer"]
    assert "tokenizer" not in plan["mvq-k4g4-t2-s0"] and "mvq-k4g4-t2-s0: tokenizer complete, skipped" in res.stdout
    assert options(plan["mvq-k4g4-t2-s0"]["eval"])["--limit"] == "50"

    res = dry_run("--out", str(out), "--only", "vq-k60-t2", "mvq-k4g4-*", "--report-only")
    assert res.returncode == 0, res.stderr
    assert not {"tokenizer", "prior", "eval"} & {k for runs in planned(res.stdout).values() for k in runs}

    res = dry_run("--out", str(out), "--only", "mvq-k4g4-t2", "--steps", "3")  # done with 1500 steps
    assert res.returncode == 2 and "steps 1500 (asked: 3)" in res.stderr
    res = dry_run("--out", str(out), "--only", "nonesuch")
    assert res.returncode == 2 and "matches no run" in res.stderr


def finished_model(folder: Path, codebook_size: int, weights_digest) -> None:
    """A model folder as `mvq train` + `mvq eval` leave it, trained with compare.py's default settings."""
    folder.mkdir(parents=True)
    (folder / "tokenizer.safetensors").write_bytes(b"tokenizer" + bytes([codebook_size]))
    (folder / "prior.safetensors").write_bytes(b"prior")
    cfg = {"training": {"steps": 1500, "batch_size": 128, "seed": 0, "data": "fashion-mnist"},
           "metrics": {"mse": 0.05},
           "tokenizer": {"tokens": 2, "layout": "1d", "base_channels": 16, "image_size": 28, "channels": 1,
                         "quantizer": {"kind": "vq", "codebook_size": codebook_size}},
           "prior": {"n_layer": 4, "n_head": 4, "n_embd": 128, "vocab_size": codebook_size, "tokens": 2},
           "prior_training": {"steps": 3000, "batch_size": 256, "seed": 0},
           "eval": {"weights_sha256": weights_digest(folder), "generation_fd": 12.5, "recon_fd": 10.0, "mse": 0.05,
                    "images": 10000, "command": "mvq eval --model m"}}
    (folder / "config.json").write_text(json.dumps(cfg))


def test_adopt_reuses_finished_models_trained_with_the_same_settings(compare, tmp_path):
    finished_model(tmp_path / "shipped" / "vq-k60", 60, compare.weights_digest)
    finished_model(tmp_path / "shipped" / "vq-k16", 16, compare.weights_digest)
    out = tmp_path / "cmp"
    res = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--only", "vq-k60-t2", "--no-benchmark",
                          "--adopt", *map(str, sorted((tmp_path / "shipped").iterdir()))],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "vq-k60-t2-s0: adopted from" in res.stdout and "vq-k16: trained with other settings" in res.stdout
    assert "train" not in [w for line in res.stdout.splitlines() if not line.startswith("#") for w in line.split()]
    run = out / "runs" / "vq-k60-t2-s0"
    assert (run / "tokenizer.safetensors").read_bytes() == b"tokenizer" + bytes([60])
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["name"], r["generation_fd"]) for r in rows] == [("vq-k60-t2", 12.5)]


def test_grid_tokens_for_other_image_sizes(compare):
    assert [compare.grid_tokens(s) for s in (28, 32, 64)] == [49, 64, 64]
    assert compare.grid(64)[-1].name == "vq-k16-grid64"


def fake_rows(compare) -> list[dict]:
    rows = []
    specs = {s.name: s for s in compare.grid(28)}
    values = {"mvqj-k16g4-t2": (40.0, 0.1), "mvq-k16g4-t2": (45.0, 0.1), "vq-k16-t2": (60.0, 0.1), "vq-k240-t2": (44.0, 0.11),
              "fsq-8x6x5-t2": (50.0, 0.12), "vq-k16-t16": (30.0, 2.0), "vq-k16-grid49": (25.0, 6.0)}
    for name, (fd, ms) in values.items():
        s = specs[name]
        for seed in (0, 1):
            rows.append({"name": name, "run": f"{name}-s{seed}", "quantizer": s.quantizer, "K": s.K, "g": s.g,
                         "levels": None, "layout": s.layout, "T": s.tokens, "vocab": s.vocab, "seed": seed,
                         "group": s.group, "mse": 0.1 + 0.01 * seed, "psnr": 16.0, "ssim": 0.6,
                         "recon_fd": fd / 2, "generation_fd": fd + seed, "tokens_used": s.vocab - seed,
                         "ms_per_image_b64": ms, "ms_per_image_b1": 10 * ms})
    return rows


def test_markdown_and_plots_from_fake_results(compare, tmp_path):
    rows, specs = fake_rows(compare), compare.grid(28)
    settings = {"data": "fashion-mnist", "steps": 1500, "prior_steps": 3000, "seeds": [0, 1], "batch_size": 128,
                "base_channels": 16, "eval_images": 10000, "eval_data": "fashion-mnist", "feature_net": None,
                "feature_nets": "fd-fmnist-classifier", "fd_floor": "0.307", "bench_device": "cpu", "bench_threads": 1, "command": "python scripts/compare.py"}
    compare.write_markdown(tmp_path / "results.md", rows, specs, settings, ["vq-k4-t2-s0", "vq-k4-t2-s1 (not started)"])
    md = (tmp_path / "results.md").read_text()
    assert "| mvqj-k16g4-t2 | MVQ joint K=16, g=4 | 2 | 240 | 2 |" in md
    assert "| mvq-k16g4-t2 | MVQ sampled K=16, g=4 | 2 | 16 | 2 |" in md
    assert "40.5 ± 0.707" in md  # gen FD, mean ± std over the two seeds
    # same K: (40.5 - 60.5) / 60.5 = -33.1 %; same vocabulary vs VQ K=240: (40.5 - 44.5) / 44.5 = -9.0 %
    assert "| 2 | MVQ joint K=16, g=4 | VQ K=16 | 240 / 16 | 40.5 ± 0.707 | 60.5 ± 0.707 | -33.1%" in md
    assert "| 2 | MVQ joint K=16, g=4 | VQ K=240 | 240 / 240 |" in md and "-9.0%" in md
    assert "| 2 | MVQ joint K=16, g=4 | FSQ 8x6x5 | 240 / 240 |" in md
    assert "| 2 | MVQ sampled K=16, g=4 | VQ K=16 | 16 / 16 | 45.5 ± 0.707 | 60.5 ± 0.707 | -24.8%" in md
    assert "60.0x" in md  # grid49 sampling 6.0 ms vs 0.1 ms
    # equal quality: nothing shorter reaches grid49's 25.5; for the 16-token VQ (30.5) MVQ joint K=16 (40.5) does not
    assert "| VQ K=16 | 49 | 25.5 | none |" in md and "| VQ K=16 | 16 | 30.5 | none |" in md
    assert "features of `fd-fmnist-classifier`, real-vs-real floor 0.307" in md
    assert "Not complete (no eval yet, left out above): vq-k4-t2-s0." in md
    assert "Asked for but not run (these seeds were never started): vq-k4-t2-s1." in md

    compare.write_plots(tmp_path, rows, specs)
    for name in ("fd_vs_tokens.png", "fd_vs_time.png"):
        with Image.open(tmp_path / name) as img:
            assert img.format == "PNG" and img.size == (900, 600) and img.mode == "RGB"
            assert len(img.getcolors(1 << 16) or []) > 10  # drawn, not blank
            # each quantizer's colour is present
            colours = {c for _, c in img.getcolors(1 << 16)}
            assert {compare.COLOURS[k] for k in ("vq", "fsq", "mvq", "mvq-joint")} <= colours  # every kind compared


def test_plots_without_results(compare, tmp_path):
    compare.write_plots(tmp_path, [], compare.grid(28))
    with Image.open(tmp_path / "fd_vs_time.png") as img:
        assert img.size == (900, 600)


def test_a_packed_picture_set_is_read_from_its_images_npy(compare, tmp_path):
    """prepare_pictures.py writes train/images.npy and test/images.npy beside the PNGs: the plan reads those."""
    data = tmp_path / "pictures"
    for split in ("train", "test"):
        (data / split / "png").mkdir(parents=True)
    np.save(data / "train" / "images.npy", np.zeros((4, 32, 32, 3), dtype=np.uint8))
    res = dry_run("--out", str(tmp_path / "cmp"), "--data", str(data), "--image-size", "32", "--channels", "3",
                  "--only", "vq-k16-t2")
    assert res.returncode == 0, res.stderr
    run = planned(res.stdout)["vq-k16-t2-s0"]
    assert options(run["tokenizer"])["--data"] == str(data / "train" / "images.npy")
    assert options(run["prior"])["--data"] == str(data / "train" / "images.npy")
    assert options(run["eval"])["--data"] == str(data / "test")  # no test/images.npy: the folder

    done = tmp_path / "cmp" / "runs" / "vq-k16-t2-s0"  # finished before images.npy was read: its folder recorded
    done.mkdir(parents=True)
    cfg = {"mvq_format": 2, "training": {"steps": 1500, "batch_size": 128, "seed": 0, "data": str(data / "train")},
           "metrics": {"mse": 0.1},
           "tokenizer": {"tokens": 2, "layout": "1d", "base_channels": 16, "image_size": 32, "channels": 3,
                         "quantizer": {"kind": "vq", "num_codes": 16}}}
    (done / "config.json").write_text(json.dumps(cfg))
    (done / "tokenizer.safetensors").write_bytes(b"x")
    res = dry_run("--out", str(tmp_path / "cmp"), "--data", str(data), "--image-size", "32", "--channels", "3",
                  "--only", "vq-k16-t2")
    assert res.returncode == 0, res.stderr  # the same data, not "completed with other settings"
    assert "tokenizer" not in planned(res.stdout)["vq-k16-t2-s0"]


def test_precision_is_pinned_for_every_training_and_checked(compare, tmp_path):
    out = tmp_path / "cmp"
    res = dry_run("--out", str(out), "--only", "vq-k16-t2", "--precision", "fp32")
    assert res.returncode == 0, res.stderr
    run = planned(res.stdout)["vq-k16-t2-s0"]
    assert options(run["tokenizer"])["--precision"] == options(run["prior"])["--precision"] == "fp32"
    assert "--precision" not in planned(dry_run("--out", str(out), "--only", "vq-k16-t2").stdout)["vq-k16-t2-s0"][
        "tokenizer"]  # not pinned: mvq's own default
    done = out / "runs" / "vq-k16-t2-s0"
    done.mkdir(parents=True)
    cfg = {"mvq_format": 2, "metrics": {"mse": 0.1},
           "training": {"steps": 1500, "batch_size": 128, "seed": 0, "data": "fashion-mnist", "precision": "bf16"},
           "tokenizer": {"tokens": 2, "layout": "1d", "base_channels": 16, "image_size": 28, "channels": 1,
                         "quantizer": {"kind": "vq", "num_codes": 16}}}
    (done / "config.json").write_text(json.dumps(cfg))
    (done / "tokenizer.safetensors").write_bytes(b"x")
    res = dry_run("--out", str(out), "--only", "vq-k16-t2", "--precision", "fp32")
    assert res.returncode == 2 and "precision bf16 (asked: fp32)" in res.stderr


def test_res_blocks_reach_every_tokenizer_and_are_checked(compare, tmp_path):
    out = tmp_path / "cmp"
    res = dry_run("--out", str(out), "--only", "vq-k16-t2", "mvq-k16g4-t2", "--res-blocks", "0")
    assert res.returncode == 0, res.stderr
    plan = planned(res.stdout)
    assert options(plan["vq-k16-t2-s0"]["tokenizer"])["--res-blocks"] == "0"
    assert options(plan["mvq-k16g4-t2-s0"]["tokenizer"])["--res-blocks"] == "0"
    default = planned(dry_run("--out", str(out), "--only", "vq-k16-t2").stdout)["vq-k16-t2-s0"]["tokenizer"]
    assert "--res-blocks" not in default  # mvq's own default (1): the commands of older tables stay as they were
    done = out / "runs" / "vq-k16-t2-s0"
    done.mkdir(parents=True)
    cfg = {"mvq_format": 2, "metrics": {"mse": 0.1},
           "training": {"steps": 1500, "batch_size": 128, "seed": 0, "data": "fashion-mnist"},
           "tokenizer": {"tokens": 2, "layout": "1d", "base_channels": 16, "image_size": 28, "channels": 1,
                         "res_blocks": 1, "quantizer": {"kind": "vq", "num_codes": 16}}}
    (done / "config.json").write_text(json.dumps(cfg))
    (done / "tokenizer.safetensors").write_bytes(b"x")
    res = dry_run("--out", str(out), "--only", "vq-k16-t2", "--res-blocks", "0")
    assert res.returncode == 2 and "residual blocks 1 (asked: 0)" in res.stderr
    assert dry_run("--out", str(out), "--only", "vq-k16-t2").returncode == 0
