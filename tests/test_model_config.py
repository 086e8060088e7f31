"""The typed model folder (config.ModelConfig) and the library functions under `mvq eval` and `mvq explore`."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_prior, tiny_tokenizer
from tokenizer_cli import Pipeline
from tokenizer_cli.classifier import Classifier, ClassifierConfig, save_classifier
from tokenizer_cli.config import (FORMAT_VERSION, QUANTIZER_CONFIGS, ConfigError, EvalResult, FSQConfig, ModelConfig,
                                  MVQConfig, QuantizerConfig, ReconstructionMetrics, TrainingRecord, VQConfig, to_dict)
from tokenizer_cli.data import InputError
from tokenizer_cli.hub import BadCheckpoint, read_config, save_pipeline, update_records


def test_model_config_round_trips_every_record(model_with_prior):
    cfg = read_config(model_with_prior)
    cfg.training = TrainingRecord(steps=10, lr=1e-3, data="fashion-mnist", loss_history=[[10, 0.5]])
    cfg.metrics = ReconstructionMetrics(images=4, mse=0.1, eval_data="x (4 images)")
    cfg.eval = EvalResult(recon_fd=1.5, generation_fd=None, images=4)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.prior.vocab_size == again.tokenizer.quantizer.vocab_size
    assert again.to_dict()["mvq_format"] == FORMAT_VERSION and "prior_training" not in again.to_dict()


@pytest.mark.parametrize("section, value, message", [
    ("eval", {"generation_fd": "low"}, "eval.generation_fd must be float"),
    ("metrics", {"images": 2.5}, "metrics.images must be int"),
    ("training", {"steps": True}, "training.steps must be int"),
    ("eval", [1, 2], "eval must be a JSON object"),
])
def test_bad_records_fail_with_the_field_named(model_dir, section, value, message):
    raw = json.loads((model_dir / "config.json").read_text())
    raw[section] = value
    (model_dir / "config.json").write_text(json.dumps(raw))
    with pytest.raises(BadCheckpoint, match=message):
        read_config(model_dir)
    with pytest.raises(ConfigError):
        ModelConfig.from_dict(raw)


def test_a_prior_of_another_tokenizer_is_refused(model_with_prior):
    raw = json.loads((model_with_prior / "config.json").read_text())
    raw["prior"]["vocab_size"] += 1
    with pytest.raises(ConfigError, match="prior models 2 tokens of a 5-word vocabulary"):
        ModelConfig.from_dict(raw)


def test_update_records_keeps_the_rest_and_rewrites_the_card(model_with_prior):
    before = read_config(model_with_prior)
    update_records(model_with_prior, eval=EvalResult(generation_fd=12.25, images=7))
    after = read_config(model_with_prior)
    assert after.eval.generation_fd == 12.25 and after.tokenizer == before.tokenizer and after.prior == before.prior
    assert "12.25" in (model_with_prior / "README.md").read_text()


@pytest.fixture
def feature_net(tmp_path):
    torch.manual_seed(0)
    return save_classifier(tmp_path / "fnet", Classifier(ClassifierConfig(width=4)),
                           {"test_accuracy": 0.5, "fd_train_vs_test": 0.25})


def test_pipeline_evaluate_measures_without_writing(model_with_prior, image_dir, feature_net):
    before = (model_with_prior / "config.json").read_bytes()
    pipe = Pipeline.from_pretrained(model_with_prior, device="cpu")
    result = pipe.evaluate(data=str(image_dir), feature_net=str(feature_net), batch_size=3)
    assert isinstance(result, EvalResult) and result.images == 4 and result.eval_data == f"{image_dir} (4 images)"
    assert result.generation_fd is not None and result.generation_fd >= 0 and result.recon_fd >= 0
    assert 0 <= result.mse and result.fd_train_vs_test is None and result.seed == 0  # no train split: no floor
    assert (model_with_prior / "config.json").read_bytes() == before
    again = pipe.evaluate(data=str(image_dir), feature_net=str(feature_net), batch_size=3)
    assert to_dict(again) | {"seconds": 0} == to_dict(result) | {"seconds": 0}  # seeded: the same numbers


def test_pipeline_explore_grid_has_a_row_per_position_and_a_column_per_mask(tmp_path):
    save_pipeline(tmp_path / "m", tiny_tokenizer("mvq-joint"))
    pipe = Pipeline.from_pretrained(tmp_path / "m", device="cpu")
    grid = pipe.explore(code=1, draws=0)
    masks, rows, pad = pipe.tokenizer.quantizer.num_masks, pipe.tokenizer.tokens_per_image, 2
    assert grid.dtype == np.uint8 and grid.shape == (rows * (28 + pad) + pad, masks * (28 + pad) + pad)
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8))
    assert not np.array_equal(pipe.explore(code=1, image=picture, draws=0), grid)  # another reference image
    with pytest.raises(InputError, match="code: must be in 0..3"):
        pipe.explore(code=4)
    save_pipeline(tmp_path / "vq", tiny_tokenizer("vq"), tiny_prior(4, 2))
    with pytest.raises(InputError, match="not an MVQ model"):
        Pipeline.from_pretrained(tmp_path / "vq", device="cpu").explore(code=0)


def test_empty_sections_read_as_absent(model_with_prior):
    raw = json.loads((model_with_prior / "config.json").read_text())
    raw.update(prior={}, eval={}, metrics=None)
    cfg = ModelConfig.from_dict(raw)
    assert cfg.prior is None and cfg.eval is None and cfg.metrics is None


def test_unknown_sections_are_kept_and_newer_formats_not_rewritten(model_with_prior):
    raw = json.loads((model_with_prior / "config.json").read_text())
    raw["license_notes"] = {"by": "me"}
    (model_with_prior / "config.json").write_text(json.dumps(raw))
    update_records(model_with_prior, eval=EvalResult(images=3))
    assert json.loads((model_with_prior / "config.json").read_text())["license_notes"] == {"by": "me"}
    raw = json.loads((model_with_prior / "config.json").read_text())
    raw["mvq_format"] = 99
    (model_with_prior / "config.json").write_text(json.dumps(raw))
    before = (model_with_prior / "config.json").read_bytes()
    with pytest.warns(UserWarning, match="newer"):
        cfg = read_config(model_with_prior)
    assert cfg.format_version == 99
    with pytest.raises(ConfigError, match="newer mvq"), pytest.warns(UserWarning):
        update_records(model_with_prior, eval=EvalResult(images=5))
    with pytest.raises(ConfigError, match="newer mvq"), pytest.warns(UserWarning):
        save_pipeline(model_with_prior, tiny_tokenizer())
    assert (model_with_prior / "config.json").read_bytes() == before


def test_records_name_their_section_and_nan_reads_as_unknown(model_with_prior):
    raw = json.loads((model_with_prior / "config.json").read_text())
    raw["prior_training"] = {"steps": "many"}
    with pytest.raises(ConfigError, match="prior_training.steps must be int"):
        ModelConfig.from_dict(raw)
    raw["prior_training"] = {"steps": 3, "final_loss": float("nan")}
    with pytest.warns(UserWarning, match="prior_training.final_loss"):
        cfg = ModelConfig.from_dict(json.loads(json.dumps(raw)))
    assert cfg.prior_training.final_loss is None and cfg.prior_training.steps == 3


def test_save_checks_the_whole_config_before_writing_anything(model_with_prior):
    before = {p.name: p.read_bytes() for p in model_with_prior.iterdir()}
    other = tiny_tokenizer("vq", tokens=3)  # a prior of 2 tokens does not fit it
    with pytest.raises(ConfigError, match="prior models 2 tokens"):
        save_pipeline(model_with_prior, other, tiny_prior(other.vocab_size, 2))
    assert {p.name: p.read_bytes() for p in model_with_prior.iterdir()} == before


def test_a_prior_stays_only_beside_the_tokenizer_it_was_trained_with(model_with_prior):
    prior_bytes = (model_with_prior / "prior.safetensors").read_bytes()
    update_records(model_with_prior, eval=EvalResult(generation_fd=12.25, images=7),
                   prior_training=TrainingRecord(steps=3))
    same = Pipeline.from_pretrained(model_with_prior, load_prior=False)
    same.save_pretrained(model_with_prior)  # the same tokenizer: its prior and the prior's records stay
    assert (model_with_prior / "prior.safetensors").read_bytes() == prior_bytes
    kept = read_config(model_with_prior)
    assert kept.prior is not None and kept.eval.generation_fd == 12.25 and kept.prior_training is not None
    fresh = same.save_pretrained(model_with_prior.parent / "fresh")  # no prior there: none of its records
    assert read_config(fresh).prior is None and read_config(fresh).eval is None

    other = tiny_tokenizer()  # same config and vocabulary, other weights: the prior would decode wrong images
    with torch.no_grad():
        next(other.parameters()).add_(0.5)
    save_pipeline(model_with_prior, other)
    cfg = read_config(model_with_prior)
    assert cfg.prior is None and cfg.prior_training is None and cfg.eval is None
    assert not (model_with_prior / "prior.safetensors").exists()
    with pytest.raises(Exception, match="prior"):
        Pipeline.from_pretrained(model_with_prior, need_prior=True)


def test_the_card_is_titled_with_the_name_given(tmp_path):
    save_pipeline(tmp_path / "m.tmp-abc", tiny_tokenizer(), name="my-model")
    assert (tmp_path / "m.tmp-abc" / "README.md").read_text().splitlines()[5] == "# my-model"


def test_a_prior_is_not_trained_into_a_folder_a_newer_mvq_wrote(model_dir):
    from typer.testing import CliRunner

    from tokenizer_cli.cli.app import app

    raw = json.loads((model_dir / "config.json").read_text())
    raw["mvq_format"] = 99
    (model_dir / "config.json").write_text(json.dumps(raw))
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    res = CliRunner().invoke(app, ["train", "prior", str(model_dir), "--steps", "2", "--device", "cpu"])
    assert res.exit_code == 1 and "written by a newer mvq" in res.stderr
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before


# ---------------------------------------------------------------- each quantizer kind its own record

KIND_FIELDS = {
    "vq": {"dim", "num_codes", "beta", "dead_threshold", "decay"},
    "fsq": {"levels"},
    "mvq": {"dim", "num_codes", "beta", "dead_threshold", "mask_bits", "num_masks", "mask_hidden", "subset_ratio",
            "hypothesis_form", "mask_scope", "mask_gradient"},
    "mvq-joint": {"dim", "num_codes", "beta", "dead_threshold", "mask_bits", "num_masks", "mask_hidden",
                  "subset_ratio", "hypothesis_form", "winner"},
}


@pytest.mark.parametrize("kind", sorted(KIND_FIELDS))
def test_config_json_holds_only_the_fields_of_its_quantizer_kind(tmp_path, kind):
    tok = tiny_tokenizer(kind)  # built from every kind's fields: the other kinds' are ignored
    folder = save_pipeline(tmp_path / kind, tok)
    raw = json.loads((folder / "config.json").read_text())
    assert raw["mvq_format"] == FORMAT_VERSION and set(raw["tokenizer"]["quantizer"]) == {"kind"} | KIND_FIELDS[kind]
    q = read_config(folder).tokenizer.quantizer
    assert type(q) is QUANTIZER_CONFIGS[kind] and q == tok.cfg.quantizer and q.kind == kind
    assert {f.name for f in dataclasses.fields(q)} - {"format2_fields"} == KIND_FIELDS[kind]


def test_quantizer_config_builds_the_record_of_its_kind():
    q = QuantizerConfig(kind="fsq", levels=[4, 4], num_codes=9, decay=0.5)
    assert isinstance(q, FSQConfig) and isinstance(q, QuantizerConfig) and not hasattr(q, "num_codes")
    assert (q.dim, q.vocab_size, q.describe(), q.has_masks) == (2, 16, "FSQ 4x4", False)
    assert QuantizerConfig() == MVQConfig() and QuantizerConfig().has_masks
    assert QuantizerConfig(kind="mvq-joint", mask_bits=2).vocab_size == 16 * 3
    with pytest.raises(TypeError, match="codebook"):
        QuantizerConfig(kind="vq", codebook=3)
    with pytest.raises(ConfigError, match="quantizer kind"):
        QuantizerConfig(kind="pq")
    with pytest.warns(UserWarning, match="ignoring unknown keys levels"):  # format 3: another kind's field is unknown
        assert QuantizerConfig.from_dict({"kind": "vq", "levels": [3, 3]}) == VQConfig()


# Written by mvq 0.2.0 (config.json format 2, before per-kind records): a tiny VQ whose flat quantizer record holds
# other kinds' fields away from their defaults (levels, mask_bits, subset_ratio), and the tokens.npy and tokens.json
# `mvq encode` wrote with it (the manifest records the tokenizer's digest and config hash of then).
FORMAT2_VQ = Path(__file__).resolve().parent / "data" / "format2-vq"


def test_a_format2_folder_and_its_token_files_keep_working_once_it_is_rewritten(tmp_path, runner):
    from tokenizer_cli.cli.app import app

    shutil.copytree(FORMAT2_VQ, tmp_path / "f")
    folder, tokens = tmp_path / "f" / "model", tmp_path / "f" / "tokens.npy"
    manifest = json.loads((tmp_path / "f" / "tokens.json").read_text())
    assert json.loads((folder / "config.json").read_text())["mvq_format"] == 2
    for step in ("as written", "rewritten"):
        pipe = Pipeline.from_pretrained(folder, device="cpu")
        assert (pipe.tokenizer_id, pipe.config_hash) == (manifest["tokenizer_id"], manifest["config_hash"]), step
        res = runner.invoke(app, ["decode", str(tokens), str(tmp_path / step), "--model", str(folder), "--device", "cpu"])
        assert res.exit_code == 0, res.output
        assert sorted(p.name for p in (tmp_path / step).iterdir()) == ["a.png", "b.png"]
        update_records(folder, eval=EvalResult(images=2))  # as `mvq eval` does: config.json written anew
    raw = json.loads((folder / "config.json").read_text())
    assert raw["mvq_format"] == FORMAT_VERSION
    assert raw["tokenizer"]["quantizer"] == {"kind": "vq", "dim": 4, "num_codes": 4, "beta": 0.25, "dead_threshold": 0.03,
                                             "decay": 0.99, "format2_fields": {"levels": [3, 3, 2, 2], "mask_bits": 2,
                                                                               "subset_ratio": 0.5}}
    other = tmp_path / "other"  # the check is live: another tokenizer's id is refused
    (tmp_path / "f" / "tokens.json").write_text(json.dumps({**manifest, "tokenizer_id": "0" * 16}))
    res = runner.invoke(app, ["decode", str(tokens), str(other), "--model", str(folder), "--device", "cpu"])
    assert res.exit_code == 1 and "tokenizer" in res.stderr
