import json

import numpy as np
from PIL import Image

from tokenizer_cli.cli.app import app
from tokenizer_cli.pipeline import load_pipeline


def run(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def test_sample_writes_a_grid_and_tokens(runner, model_with_prior, tmp_path):
    out = tmp_path / "s.png"
    res = run(runner, "sample", "--n", 4, "--out", out, "--model", model_with_prior, "--device", "cpu",
              "--tokens-out", tmp_path / "t.npy", "--images-dir", tmp_path / "imgs", "--seed", 3)
    assert res.exit_code == 0, res.output
    assert Image.open(out).size == (2 * 112 + 3 * 2, 2 * 112 + 3 * 2)  # 2x2 tiles, 28 px enlarged 4x, 2 px padding
    tokens = np.load(tmp_path / "t.npy")
    assert tokens.shape == (4, 2) and tokens.max() < 12
    assert len(list((tmp_path / "imgs").glob("*.png"))) == 4
    assert "ms/image" in res.stderr
    pipe = load_pipeline(str(model_with_prior))
    assert np.array_equal(tokens, pipe.prior.generate(4, seed=3).numpy())


def test_sample_bad_options(runner, model_with_prior, model_dir, tmp_path):
    res = run(runner, "sample", "--n", 0, "--out", tmp_path / "s.png", "--model", model_with_prior)
    assert res.exit_code == 2 and "--n" in res.stderr  # a usage error, before anything is loaded
    res = run(runner, "sample", "--out", tmp_path / "s.png", "--model", model_dir)
    assert res.exit_code == 1 and "no prior" in res.stderr
    res = run(runner, "sample", "--out", tmp_path / "s.png", "--model", model_with_prior, "--top-p", 2)
    assert res.exit_code == 2 and "--top-p" in res.stderr
    res = run(runner, "sample", "--out", tmp_path / "s.png", "--model", model_with_prior, "--class", 3)
    assert res.exit_code == 1 and "class" in res.stderr
    assert not (tmp_path / "s.png").exists()


def test_train_prior_from_a_tokens_file(runner, model_dir, image_dir, tmp_path):
    assert run(runner, "encode", image_dir, tmp_path / "t.npy", "--model", model_dir, "--device", "cpu").exit_code == 0
    res = run(runner, "train", "prior", model_dir, "--tokens-file", tmp_path / "t.npy", "--steps", 3, "--layers", 1,
              "--heads", 2, "--width", 16, "--batch-size", 4, "--device", "cpu")
    assert res.exit_code == 0, res.output
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["prior"]["vocab_size"] == 4 and cfg["prior"]["tokens"] == 2
    assert "prior_training" in cfg and (model_dir / "prior.safetensors").exists()
    assert not (model_dir / "checkpoints-prior").exists()
    assert load_pipeline(str(model_dir)).prior.generate(2, seed=0).shape == (2, 2)


def test_train_prior_rejects_tokens_of_another_model(runner, model_dir, tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((5, 3), dtype=np.int64))
    res = run(runner, "train", "prior", model_dir, "--tokens-file", tmp_path / "t.npy", "--device", "cpu")
    assert res.exit_code == 1 and "3 per row but the model uses 2" in res.stderr, res.stderr


def test_benchmark_json(runner, model_with_prior, vq_baseline_with_prior, tmp_path):
    res = run(runner, "benchmark", "--tokens", 2, "--model", model_with_prior, "--model", vq_baseline_with_prior,
              "--repeats", 1, "--json", tmp_path / "b.json", "--device", "cpu")
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "b.json").read_text())
    rows = {r["tokens"]: r for r in result["rows"]}
    assert set(rows) == {2, 49}
    for r in rows.values():
        assert r["ms_per_image_b1"] > 0 and r["ms_per_image_b64"] > 0 and r["ms_per_image_b64_no_cache"] > 0
    (up,) = result["speedups"]
    assert up["baseline_tokens"] == 49
    assert abs(up["speedup"] - rows[49]["ms_per_image_b64"] / rows[2]["ms_per_image_b64"]) < 1e-9
    assert "speed-up" in res.stdout


def test_benchmark_without_such_models(runner, model_with_prior, tmp_path):
    res = run(runner, "benchmark", "--tokens", 5, "--model", model_with_prior, "--repeats", 1)
    assert res.exit_code == 1 and "5 tokens" in res.stderr


def test_speedups_compare_only_models_of_the_same_images():
    from tokenizer_cli.benchmark import speedups

    def row(model, kind, t, image, ms):
        return {"model": model, "quantizer": kind, "tokens": t, "image": image, "ms_per_image_b64": ms,
                "quality_metric": "gen FD", "quality": 100.0 / t}

    rows = [row("grey-mvq", "mvq", 2, "28x28x1", 0.05), row("colour-mvq", "mvq", 2, "64x64x3", 0.06),
            row("grey-vq16", "vq", 16, "28x28x1", 0.5), row("grey-vq2", "vq", 2, "28x28x1", 0.04)]
    pairs = {(u["model"], u["baseline"]): u for u in speedups(rows, 2)}
    assert set(pairs) == {("grey-mvq", "grey-vq16"), ("grey-mvq", "grey-vq2"), ("grey-vq2", "grey-vq16")}
    assert abs(pairs["grey-mvq", "grey-vq16"]["speedup"] - 10.0) < 1e-9
    assert pairs["grey-mvq", "grey-vq16"]["baseline_as_good"] is True


def test_equal_quality_names_the_fastest_model_as_good_as_each_baseline():
    from tokenizer_cli.benchmark import equal_quality

    def row(model, kind, t, fd, ms, image="28x28x1"):
        return {"model": model, "quantizer": kind, "tokens": t, "image": image, "ms_per_image_b64": ms,
                "quality_metric": "gen FD", "quality": fd}

    rows = [row("mvq-t5", "mvq", 5, 95.0, 0.12), row("mvq-t8", "mvq", 8, 80.0, 0.2), row("vq-t2", "vq", 2, 170.0, 0.05),
            row("vq-t16", "vq", 16, 98.0, 0.4), row("vq-grid49", "vq", 49, 58.0, 1.5),
            row("colour", "mvq", 2, 10.0, 0.01, image="64x64x3")]
    found = {e["baseline"]: e for e in equal_quality(rows)}
    assert found["vq-t16"]["model"] == "mvq-t5" and abs(found["vq-t16"]["speedup"] - 0.4 / 0.12) < 1e-9
    assert found["vq-grid49"]["model"] is None and found["vq-grid49"]["speedup"] is None  # nothing reaches 58
    assert found["vq-t2"]["model"] is None  # no shorter model


def test_prior_with_a_mask_head_samples_masks_that_decode_back_to_the_samples(runner, model_dir, image_dir, tmp_path):
    assert run(runner, "encode", image_dir, tmp_path / "t.npy", "--model", model_dir, "--device", "cpu").exit_code == 0
    res = run(runner, "train", "prior", model_dir, "--tokens-file", tmp_path / "t.npy", "--steps", 3, "--layers", 1,
              "--heads", 2, "--width", 16, "--batch-size", 4, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert json.loads((model_dir / "config.json").read_text())["prior"]["num_masks"] == 3
    res = run(runner, "sample", "--n", 6, "--out", tmp_path / "s.png", "--model", model_dir, "--device", "cpu",
              "--tokens-out", tmp_path / "s.npy", "--images-dir", tmp_path / "imgs", "--seed", 4)
    assert res.exit_code == 0, res.output
    pipe = load_pipeline(str(model_dir))
    ids, masks = pipe.prior.generate(6, seed=4, return_masks=True)
    assert np.array_equal(np.load(tmp_path / "s.npy"), ids.numpy())
    assert np.array_equal(np.load(tmp_path / "s.masks.npy"), masks.numpy())
    res = run(runner, "decode", tmp_path / "s.npy", tmp_path / "back", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 0, res.output
    for i in (0, 5):
        name = f"sample-seed-4-{i:05d}.png"  # sample and decode name an image alike
        back, sampled = (np.asarray(Image.open(tmp_path / folder / name)) for folder in ("back", "imgs"))
        assert np.array_equal(back, sampled)


def test_a_new_prior_can_replace_one_whose_file_is_gone(runner, model_with_prior, image_dir, tmp_path):
    (model_with_prior / "prior.safetensors").unlink()
    res = run(runner, "train", "prior", model_with_prior, "--data", image_dir, "--steps", 2, "--layers", 1,
              "--heads", 2, "--width", 16, "--batch-size", 2, "--device", "cpu", "--overwrite")
    assert res.exit_code == 0, res.output
    assert load_pipeline(str(model_with_prior)).prior.generate(2, seed=0).shape == (2, 2)
