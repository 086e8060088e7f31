"""`mvq eval` on real tiny model folders, a real image folder and a tiny feature net written by the test."""

from __future__ import annotations

import json

import pytest
import torch

from tokenizer_cli.classifier import Classifier, ClassifierConfig, save_classifier
from tokenizer_cli.cli.app import app

KEYS = {"recon_fd", "generation_fd", "mse", "psnr", "ssim", "codebook_usage", "tokens_used", "perplexity", "images",
        "feature_net", "feature_net_accuracy", "fd_train_vs_test", "seed", "command", "warning", "sampler"}


@pytest.fixture
def feature_net(tmp_path):
    torch.manual_seed(0)
    return save_classifier(tmp_path / "fnet", Classifier(ClassifierConfig(width=4)),
                           {"test_accuracy": 0.5, "fd_train_vs_test": 0.25})


def run(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def evaluate(runner, model, image_dir, feature_net, out, *extra):
    return run(runner, "eval", "--model", model, "--data", image_dir, "--feature-net", feature_net,
               "--json", out, "--device", "cpu", "--batch-size", 3, *extra)


def test_eval_without_prior_writes_json_and_the_model_card(runner, model_dir, image_dir, feature_net, tmp_path):
    res = evaluate(runner, model_dir, image_dir, feature_net, tmp_path / "e.json")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert KEYS <= report.keys()
    assert report["generation_fd"] is None and report["recon_fd"] >= 0 and report["images"] == 4
    assert -1 <= report["ssim"] <= 1 and report["feature_net_accuracy"] == 0.5
    assert report["fd_train_vs_test"] is None  # the feature net's stored floor is of other data
    assert report["warning"].startswith("FD on 4 images says little (measured on Fashion-MNIST: two disjoint samples of 24 of its test")
    assert "warning: FD on 4 images says little" in res.stderr
    assert "- (no train split beside the data)" in res.stdout
    cfg = json.loads((model_dir / "config.json").read_text())
    assert KEYS <= cfg["eval"].keys() and cfg["eval"]["generation_fd"] is None
    assert "tokenizer" in cfg  # the rest of config.json is kept
    assert (model_dir / "README.md").is_file()
    assert "no prior" in res.stderr
    assert "reconstruction FD" in res.stdout


def test_eval_with_prior_reports_generation_fd(runner, model_with_prior, image_dir, feature_net, tmp_path):
    res = evaluate(runner, model_with_prior, image_dir, feature_net, tmp_path / "e.json", "--limit", 3, "--seed", 1)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert isinstance(report["generation_fd"], float) and report["generation_fd"] >= 0
    assert report["images"] == 3 and report["seed"] == 1
    assert "eval" not in json.loads((model_with_prior / "config.json").read_text())  # --limit: a partial run
    assert report["written_to"] is None and "--limit 3" in res.stderr


def test_eval_no_write_leaves_the_model_folder_alone(runner, model_dir, image_dir, feature_net, tmp_path):
    before = (model_dir / "config.json").read_text()
    res = evaluate(runner, model_dir, image_dir, feature_net, tmp_path / "e.json", "--no-write")
    assert res.exit_code == 0, res.output
    assert (model_dir / "config.json").read_text() == before
    assert json.loads((tmp_path / "e.json").read_text())["written_to"] is None


def test_eval_missing_feature_net_is_one_error_line(runner, model_dir, image_dir, tmp_path):
    res = evaluate(runner, model_dir, image_dir, tmp_path / "nope", tmp_path / "e.json")
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "feature net" in lines[0]
    assert not (tmp_path / "e.json").exists()


def test_eval_does_not_write_into_a_hub_cache_snapshot(runner, model_dir, image_dir, feature_net, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc
    from test_hub import make_hub_cache

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    snap = make_hub_cache(tmp_path / "hf-cache", "someone/tiny-mvq", model_dir)
    before = (snap / "config.json").read_text()
    res = evaluate(runner, "someone/tiny-mvq", image_dir, feature_net, tmp_path / "e.json")
    assert res.exit_code == 0, res.output
    assert "Hub cache snapshot" in res.stderr
    assert (snap / "config.json").read_text() == before
    assert json.loads((tmp_path / "e.json").read_text())["written_to"] is None


def test_the_floor_is_measured_on_the_data_evaluated(runner, model_dir, feature_net, tmp_path):
    """A `test` folder with a `train` folder beside it: the floor is FD of as many of its train images."""
    import numpy as np
    from PIL import Image

    from tokenizer_cli.classifier import load_feature_net
    from tokenizer_cli.datasets import load_images
    from tokenizer_cli.fd import extract_features, features_fd

    rng = np.random.default_rng(0)
    for split, n in (("train", 9), ("test", 6)):
        (tmp_path / "set" / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(tmp_path / "set" / split / f"{i}.png")
    res = evaluate(runner, model_dir, tmp_path / "set" / "test", feature_net, tmp_path / "e.json", "--no-write")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "e.json").read_text())
    net, _ = load_feature_net(str(feature_net), "cpu")
    test, train = (load_images(str(tmp_path / "set" / split), "", 28, 1) for split in ("test", "train"))
    expected = features_fd(extract_features(net, train[:6], 3, "cpu"), extract_features(net, test, 3, "cpu"))
    assert report["fd_train_vs_test"] == pytest.approx(expected, rel=1e-6) and report["fd_train_vs_test"] != 0.25


@pytest.mark.slow
def test_fd_of_small_samples_of_the_same_data_justifies_the_warning():
    """Two disjoint samples of n Fashion-MNIST test images, in the shipped classifier's features: far apart at
    small n (evaluate.SAME_DATA_FD), close from MIN_FD_IMAGES on."""
    import numpy as np

    from tokenizer_cli.classifier import load_feature_net
    from tokenizer_cli.datasets import FASHION, load_images
    from tokenizer_cli.evaluate import MIN_FD_IMAGES
    from tokenizer_cli.fd import extract_features, features_fd

    try:
        images = load_images(FASHION, "test", 28, 1)
    except Exception as err:  # Debian's dataset-fashion-mnist is not installed here
        pytest.skip(f"no Fashion-MNIST: {err}")
    net, _ = load_feature_net("fd-fmnist-classifier", "cpu")
    feats = extract_features(net, images, 500, "cpu")
    order = np.random.default_rng(0).permutation(len(feats))

    def same_data_fd(n):
        return features_fd(feats[order[:n]], feats[order[n : 2 * n]])

    assert same_data_fd(24) > 100 and 25 < same_data_fd(100) < 80
    assert same_data_fd(MIN_FD_IMAGES) < 3


def test_the_floor_of_a_packed_set_spreads_over_its_train_array(runner, model_dir, feature_net, tmp_path):
    """test/images.npy beside train/images.npy: the floor takes train rows spread over the whole (ordered) array."""
    import numpy as np

    from tokenizer_cli.classifier import load_feature_net
    from tokenizer_cli.fd import extract_features, features_fd

    rng = np.random.default_rng(0)
    train = rng.integers(0, 255, (12, 28, 28), dtype=np.uint8)
    train[6:] //= 4  # a second "package" of darker pictures: the first 6 rows alone would not represent it
    test = rng.integers(0, 255, (6, 28, 28), dtype=np.uint8)
    for split, arr in (("train", train), ("test", test)):
        (tmp_path / split).mkdir()
        np.save(tmp_path / split / "images.npy", arr)
    res = evaluate(runner, model_dir, tmp_path / "test" / "images.npy", feature_net, tmp_path / "e.json", "--no-write")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "e.json").read_text())
    net, _ = load_feature_net(str(feature_net), "cpu")
    rows = np.linspace(0, 11, 6).round().astype(int)  # 0 2 4 7 9 11
    expected = features_fd(extract_features(net, train[rows], 3, "cpu"), extract_features(net, test, 3, "cpu"))
    assert report["fd_train_vs_test"] == pytest.approx(expected, rel=1e-6)


def test_eval_samples_with_the_sampler_chosen_and_records_only_the_default(runner, model_with_both_priors, image_dir,
                                                                           feature_net, tmp_path):
    """--sampler maskgit --steps S measures the MaskGIT prior's samples (as Pipeline.evaluate does), says so, and
    leaves the folder's record (of the default sampler, the AR prior) alone; bad sampler options are one line."""
    from tokenizer_cli import Pipeline

    res = evaluate(runner, model_with_both_priors, image_dir, feature_net, tmp_path / "m.json", "--sampler", "maskgit",
                   "--steps", 1, "--seed", 2)
    assert res.exit_code == 0, res.output
    masked = json.loads((tmp_path / "m.json").read_text())
    assert masked["sampler"] == "MaskGIT prior, 1 step" and "MaskGIT prior, 1 step" in res.stdout
    assert masked["written_to"] is None and "the sampler options chose how to sample" in res.stderr
    assert "eval" not in json.loads((model_with_both_priors / "config.json").read_text())
    api = Pipeline.from_pretrained(model_with_both_priors, device="cpu").evaluate(
        data=str(image_dir), feature_net=str(feature_net), batch_size=3, seed=2, sampler="maskgit", steps=1)
    assert api.generation_fd == pytest.approx(masked["generation_fd"], rel=1e-5)

    res = evaluate(runner, model_with_both_priors, image_dir, feature_net, tmp_path / "a.json", "--seed", 2)
    assert res.exit_code == 0, res.output
    default = json.loads((tmp_path / "a.json").read_text())
    assert default["sampler"] == "AR prior" and default["written_to"] is not None
    assert default["generation_fd"] != pytest.approx(masked["generation_fd"])
    assert json.loads((model_with_both_priors / "config.json").read_text())["eval"]["sampler"] == "AR prior"

    for extra, message in ((["--sampler", "maskgit", "--steps", 3], "--steps: must be a whole number from 1 to 2"),
                           (["--steps", "x"], "--steps must be a whole number"),
                           (["--sampler", "ar", "--steps", 1], "--steps: is an option of the MaskGIT sampler")):
        res = evaluate(runner, model_with_both_priors, image_dir, feature_net, tmp_path / "bad.json", *extra)
        assert res.exit_code == 1 and message in res.stderr and "Traceback" not in res.output, res.output
        assert not (tmp_path / "bad.json").exists()


def test_eval_with_a_sampler_the_model_lacks_is_one_line(runner, model_with_prior, image_dir, feature_net, tmp_path):
    res = evaluate(runner, model_with_prior, image_dir, feature_net, tmp_path / "e.json", "--sampler", "maskgit")
    assert res.exit_code == 1 and "has no MaskGIT prior (it has: ar" in res.stderr, res.output
    assert not (tmp_path / "e.json").exists()


def test_eval_of_a_maskgit_only_model_records_its_sampler_and_a_retrained_prior_drops_it(runner, image_dir,
                                                                                          feature_net, tmp_path):
    from conftest import tiny_maskgit_prior, tiny_tokenizer
    from tokenizer_cli.hub import save_pipeline, weights_digest

    folder = tmp_path / "maskgit-only"
    tok = tiny_tokenizer()
    save_pipeline(folder, tok, maskgit_prior=tiny_maskgit_prior(tok.vocab_size, 2))
    res = evaluate(runner, folder, image_dir, feature_net, tmp_path / "e.json")
    assert res.exit_code == 0, res.output
    assert "has no prior" not in res.stderr
    ev = json.loads((folder / "config.json").read_text())["eval"]
    assert ev["sampler"] == "MaskGIT prior, 2 steps" and isinstance(ev["generation_fd"], float)
    assert ev["weights_sha256"] == weights_digest(folder)
    common = ["--data", image_dir, "--steps", 2, "--layers", 1, "--heads", 2, "--width", 16, "--batch-size", 4,
              "--device", "cpu"]
    res = run(runner, "train", "prior", folder, "--kind", "maskgit", *common, "--overwrite")
    assert res.exit_code == 0, res.output
    assert "eval" not in json.loads((folder / "config.json").read_text())  # its FD was of the prior replaced


def test_a_maskgit_prior_trained_beside_an_evaluated_ar_prior_leaves_the_eval_valid(runner, model_with_prior,
                                                                                     image_dir, feature_net, tmp_path):
    from tokenizer_cli.hub import weights_digest

    res = evaluate(runner, model_with_prior, image_dir, feature_net, tmp_path / "e.json", "--sampler", "ar")
    assert res.exit_code == 0, res.output
    ev = json.loads((model_with_prior / "config.json").read_text())["eval"]  # --sampler ar is the default: kept
    assert ev["sampler"] == "AR prior" and ev["weights_sha256"] == weights_digest(model_with_prior)
    res = run(runner, "train", "prior", model_with_prior, "--kind", "maskgit", "--data", image_dir, "--steps", 2,
              "--layers", 1, "--heads", 2, "--width", 16, "--batch-size", 4, "--device", "cpu")
    assert res.exit_code == 0, res.output
    kept = json.loads((model_with_prior / "config.json").read_text())["eval"]
    assert kept == ev and kept["weights_sha256"] == weights_digest(model_with_prior)
    assert weights_digest(model_with_prior, "maskgit") != weights_digest(model_with_prior, "ar")


def test_sampler_options_on_a_model_without_a_prior_are_one_line(runner, model_dir, image_dir, feature_net, tmp_path):
    res = evaluate(runner, model_dir, image_dir, feature_net, tmp_path / "e.json", "--steps", 2)
    assert res.exit_code == 1 and "--steps: is an option of the MaskGIT sampler, but the model has no prior" in res.stderr
    assert not (tmp_path / "e.json").exists()


def test_eval_without_data_measures_the_held_out_split_of_what_the_model_was_trained_on(runner, feature_net,
                                                                                         tmp_path):
    import dataclasses

    import numpy as np

    from conftest import tiny_tokenizer
    from tokenizer_cli.config import TrainingRecord
    from tokenizer_cli.hub import read_config, save_pipeline, write_config

    folder = tmp_path / "m"
    save_pipeline(folder, tiny_tokenizer())
    res = run(runner, "eval", "--model", folder, "--feature-net", feature_net, "--device", "cpu")
    assert res.exit_code == 1 and "records no training data: name the pictures to measure it on" in res.stderr
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 5)):
        (tmp_path / "set" / split).mkdir(parents=True)
        np.save(tmp_path / "set" / split / "images.npy", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
    for trained_on, ok in ((tmp_path / "gone" / "train" / "images.npy", False),
                           (tmp_path / "set" / "train" / "images.npy", True)):
        cfg = read_config(folder)
        write_config(folder, dataclasses.replace(cfg, training=TrainingRecord(data=str(trained_on), steps=1)))
        res = run(runner, "eval", "--model", folder, "--feature-net", feature_net, "--device", "cpu", "--json",
                  tmp_path / "e.json", "--no-write")
        if not ok:
            assert res.exit_code == 1 and f"was trained on {trained_on}, which is not on this machine" in res.stderr
            assert "Traceback" not in res.output
            continue
        assert res.exit_code == 0, res.output
        report = json.loads((tmp_path / "e.json").read_text())
        assert report["images"] == 5 and "set/test/images.npy" in report["eval_data"]
