"""`mvq eval` on real tiny model folders, a real image folder and a tiny feature net written by the test."""

from __future__ import annotations

import json

import pytest
import torch

from tokenizer_cli.classifier import Classifier, ClassifierConfig, save_classifier
from tokenizer_cli.cli.app import app

KEYS = {"recon_fd", "generation_fd", "mse", "psnr", "ssim", "codebook_usage", "tokens_used", "perplexity", "images",
        "feature_net", "feature_net_accuracy", "fd_train_vs_test", "seed", "command"}


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
    assert report["fd_train_vs_test"] == 0.25
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
