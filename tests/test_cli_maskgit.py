"""The MaskGIT prior in model folders, the Python API and the CLI: beside the AR prior, strictly loaded, chosen
with --sampler, trained with --kind maskgit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import run_interrupted_at_step, tiny_maskgit_prior, tiny_prior, tiny_tokenizer
from tokenizer_cli import Pipeline
from tokenizer_cli.checkpoint import latest_checkpoint
from tokenizer_cli.cli.app import app
from tokenizer_cli.cli.models import _row
from tokenizer_cli.config import config_hash, to_dict
from tokenizer_cli.data import BadArgument
from tokenizer_cli.hub import BadCheckpoint, read_config, save_pipeline
from tokenizer_cli.pipeline import load_pipeline
from tokenizer_cli.train import TrainConfig, train_prior


def run(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


def test_a_folder_with_both_priors_loads_each_strictly(model_with_both_priors):
    pipe = Pipeline.from_pretrained(model_with_both_priors, device="cpu")
    tok = tiny_tokenizer()
    ar, mg = tiny_prior(tok.vocab_size, 2), tiny_maskgit_prior(tok.vocab_size, 2)
    for loaded, made in ((pipe.prior, ar), (pipe.maskgit_prior, mg)):
        state = made.state_dict()
        assert loaded.state_dict().keys() == state.keys()
        assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    assert set(pipe.priors) == {"ar", "maskgit"} and pipe.sampler() is pipe.prior
    assert pipe.sampler("maskgit") is pipe.maskgit_prior
    raw = json.loads((model_with_both_priors / "config.json").read_text())
    assert raw["maskgit_prior"]["vocab_size"] == 4 and raw["maskgit_prior"]["min_mask_ratio"] == 0.45
    assert raw["prior"]["vocab_size"] == 4 and "min_mask_ratio" not in raw["prior"]
    assert "ar, maskgit" in _row("m", read_config(model_with_both_priors), "local")
    card = (model_with_both_priors / "README.md").read_text()
    assert "a MaskGIT prior (`prior-maskgit.safetensors`" in card and "--sampler ar|maskgit" in card

    other = tiny_maskgit_prior(tok.vocab_size, 3)  # weights of another shape under the same config.json
    save_file({k: v.contiguous() for k, v in other.state_dict().items()},
              str(model_with_both_priors / "prior-maskgit.safetensors"))
    with pytest.raises(BadCheckpoint, match="prior-maskgit.safetensors: weights do not match config.json"):
        Pipeline.from_pretrained(model_with_both_priors)


def test_sampler_picks_the_prior(runner, model_with_both_priors, tmp_path):
    pipe = load_pipeline(str(model_with_both_priors))
    for sampler, prior in ((None, pipe.prior), ("ar", pipe.prior), ("maskgit", pipe.maskgit_prior)):
        out = tmp_path / f"{sampler}.npy"
        extra = ["--sampler", sampler] if sampler else []
        res = run(runner, "sample", "--n", 5, "--out", tmp_path / f"{sampler}.png", "--model", model_with_both_priors,
                  "--device", "cpu", "--tokens-out", out, "--seed", 3, *extra)
        assert res.exit_code == 0, res.output
        assert np.array_equal(np.load(out), prior.generate(5, seed=3).numpy()), sampler
        assert ("MaskGIT prior, 2 steps" if sampler == "maskgit" else "AR prior") in res.stderr
    assert not np.array_equal(np.load(tmp_path / "ar.npy"), np.load(tmp_path / "maskgit.npy"))
    res = run(runner, "sample", "--n", 5, "--out", tmp_path / "s1.png", "--model", model_with_both_priors,
              "--device", "cpu", "--tokens-out", tmp_path / "s1.npy", "--seed", 3, "--sampler", "maskgit",
              "--steps", 1, "--choice-temperature", 0, "--temperature", 0)
    assert res.exit_code == 0, res.output
    greedy = pipe.maskgit_prior.generate(5, steps=1, choice_temperature=0, temperature=0)
    assert np.array_equal(np.load(tmp_path / "s1.npy"), greedy.numpy())


@pytest.mark.parametrize("steps, message", [
    ("0", "--steps: must be a whole number from 1 to 2 (the model's tokens per image), got 0"),
    ("3", "--steps: must be a whole number from 1 to 2 (the model's tokens per image), got 3"),
    ("abc", "--steps must be a whole number from 1 to the model's tokens per image, got 'abc'"),
    ("1.5", "--steps must be a whole number"),
])
def test_bad_steps_get_one_line(runner, model_with_both_priors, tmp_path, steps, message):
    res = run(runner, "sample", "--out", tmp_path / "s.png", "--model", model_with_both_priors, "--device", "cpu",
              "--sampler", "maskgit", "--steps", steps)
    assert message in one_error_line(res)
    assert not (tmp_path / "s.png").exists()


def test_a_sampler_the_folder_lacks_or_options_of_the_other_get_one_line(runner, model_with_prior, tmp_path):
    res = run(runner, "sample", "--out", tmp_path / "s.png", "--model", model_with_prior, "--sampler", "maskgit")
    assert "--sampler: " in one_error_line(res) and "has no MaskGIT prior (it has: ar" in res.stderr
    for option, value in (("--steps", 2), ("--steps", 0), ("--choice-temperature", 0)):  # 0 is an option too
        res = run(runner, "sample", "--out", tmp_path / "s.png", "--model", model_with_prior, option, value)
        assert f"{option}: is an option of the MaskGIT sampler" in one_error_line(res)
    res = run(runner, "sample", "--out", tmp_path / "s.png", "--model", model_with_prior, "--sampler", "diffusion")
    assert res.exit_code == 2 and "--sampler" in res.stderr
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("key, value, message", [
    ("vocab_size", 5, "the MaskGIT prior models 2 tokens of a 5-word vocabulary but the tokenizer makes 2 tokens of 4"),
    ("tokens", 3, "the MaskGIT prior models 3 tokens of a 4-word vocabulary but the tokenizer makes 2 tokens of 4"),
    ("num_masks", 2, "the MaskGIT prior predicts 2 masks but the tokenizer's tokens carry 3"),
])
def test_a_maskgit_prior_that_does_not_fit_the_tokenizer_is_refused(runner, model_with_both_priors, tmp_path,
                                                                     key, value, message):
    raw = json.loads((model_with_both_priors / "config.json").read_text())
    raw["maskgit_prior"][key] = value
    (model_with_both_priors / "config.json").write_text(json.dumps(raw))
    res = run(runner, "sample", "--out", tmp_path / "s.png", "--model", model_with_both_priors, "--device", "cpu")
    assert message in one_error_line(res)
    with pytest.raises(BadCheckpoint, match=message):
        Pipeline.from_pretrained(model_with_both_priors)


def test_python_api_samples_with_either_prior(model_with_both_priors, model_with_prior):
    pipe = Pipeline.from_pretrained(model_with_both_priors, device="cpu")
    tokens = pipe.sample_tokens(6, seed=2, sampler="maskgit", steps=1)
    assert np.array_equal(tokens.ids, pipe.maskgit_prior.generate(6, seed=2, steps=1).numpy())
    assert tokens.masks.shape == (6, 2)  # drawn from the tokenizer's p(m | k): this prior has no mask head
    images = pipe.sample(3, sampler="maskgit", steps=2, choice_temperature=1.0)
    assert len(images) == 3 and images[0].size == (28, 28)
    with pytest.raises(BadArgument, match="steps: is an option of the MaskGIT sampler"):
        pipe.sample_tokens(2, steps=2)  # the default sampler is the AR prior
    with pytest.raises(BadArgument, match="steps: must be a whole number from 1 to 2"):
        pipe.sample_tokens(2, sampler="maskgit", steps=3)
    with pytest.raises(BadArgument, match="no MaskGIT prior"):
        Pipeline.from_pretrained(model_with_prior).sample(2, sampler="maskgit")
    assert "priors ar, maskgit" in repr(pipe)


def test_joint_tokens_get_a_vocabulary_of_k_times_m(tmp_path):
    tok = tiny_tokenizer("mvq-joint")
    folder = save_pipeline(tmp_path / "joint", tok, maskgit_prior=tiny_maskgit_prior(tok.vocab_size, 2))
    pipe = Pipeline.from_pretrained(folder)
    assert pipe.maskgit_prior.cfg.vocab_size == 12 and pipe.sampler() is pipe.maskgit_prior  # the only prior
    ids = pipe.sample_tokens(64, seed=0).ids
    assert ids.max() < 12 and len(np.unique(ids)) > 4


def test_a_maskgit_prior_stays_only_beside_its_tokenizer(model_with_both_priors):
    folder = model_with_both_priors
    maskgit_bytes = (folder / "prior-maskgit.safetensors").read_bytes()
    save_pipeline(folder, load_pipeline(str(folder)).tokenizer)
    assert (folder / "prior-maskgit.safetensors").read_bytes() == maskgit_bytes  # the same tokenizer: kept
    same = Pipeline.from_pretrained(folder, load_prior=False)
    same.save_pretrained(folder)
    assert read_config(folder).prior_kinds == ["ar", "maskgit"]
    fresh = read_config(same.save_pretrained(folder.parent / "fresh"))
    assert fresh.prior_kinds == [] and fresh.maskgit_prior_training is None

    other = tiny_tokenizer()  # same config, other weights: its tokens mean other images
    with torch.no_grad():
        next(other.parameters()).add_(0.5)
    save_pipeline(folder, other)
    cfg = read_config(folder)
    assert cfg.prior_kinds == [] and cfg.maskgit_prior_training is None
    assert not (folder / "prior-maskgit.safetensors").exists() and not (folder / "prior.safetensors").exists()
    assert "maskgit_prior" not in json.loads((folder / "config.json").read_text())


def test_folders_without_a_maskgit_prior_keep_their_config_and_hash(model_with_prior):
    before = json.loads((model_with_prior / "config.json").read_text())
    cfg = read_config(model_with_prior)
    assert cfg.maskgit_prior is None and cfg.prior_kinds == ["ar"]
    assert cfg.hash == config_hash({"tokenizer": cfg.tokenizer.hash_dict(), "prior": to_dict(cfg.prior)})
    Pipeline.from_pretrained(model_with_prior).save_pretrained(model_with_prior)
    assert json.loads((model_with_prior / "config.json").read_text()).keys() == before.keys()


def test_train_a_maskgit_prior_beside_the_ar_prior(runner, model_dir, image_dir, tmp_path):
    assert run(runner, "encode", image_dir, tmp_path / "t.npy", "--model", model_dir, "--device", "cpu").exit_code == 0
    common = ["--tokens-file", tmp_path / "t.npy", "--steps", 3, "--layers", 1, "--heads", 2, "--width", 16,
              "--batch-size", 4, "--device", "cpu"]
    res = run(runner, "train", "prior", model_dir, *common)
    assert res.exit_code == 0, res.output
    ar_bytes = (model_dir / "prior.safetensors").read_bytes()
    res = run(runner, "train", "prior", model_dir, "--min-mask-ratio", 0.2, *common, "--overwrite")
    assert "--min-mask-ratio is an option of the MaskGIT prior" in one_error_line(res)
    res = run(runner, "train", "prior", model_dir, "--kind", "maskgit", "--min-mask-ratio", 0, *common)
    assert "--min-mask-ratio must be above 0" in one_error_line(res)
    assert (model_dir / "prior.safetensors").read_bytes() == ar_bytes and not (model_dir / "prior-maskgit.safetensors").exists()
    res = run(runner, "train", "prior", model_dir, "--label-smoothing", 0, *common, "--overwrite")
    assert "--label-smoothing is an option of the MaskGIT prior" in one_error_line(res)
    res = run(runner, "train", "prior", model_dir, "--kind", "maskgit", "--min-mask-ratio", 0.2,
              "--label-smoothing", 0, *common)
    assert res.exit_code == 0, res.output
    assert "prior-maskgit.safetensors" in res.stderr.replace("\n", "")
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["maskgit_prior"]["min_mask_ratio"] == 0.2 and cfg["maskgit_prior"]["label_smoothing"] == 0
    assert cfg["maskgit_prior"]["num_masks"] == 3 and cfg["maskgit_prior"]["n_layer"] == 1  # with a mask head
    assert cfg["maskgit_prior_training"]["steps"] == 3 and cfg["maskgit_prior_training"]["final_loss"] > 0
    assert cfg["prior"] is not None and (model_dir / "prior.safetensors").read_bytes() == ar_bytes
    assert not (model_dir / "checkpoints-maskgit").exists()
    assert "MaskGIT prior training" in (model_dir / "README.md").read_text()

    res = run(runner, "train", "prior", model_dir, "--kind", "maskgit", *common)
    assert "already has its MaskGIT prior (prior-maskgit.safetensors)" in one_error_line(res)

    res = run(runner, "sample", "--n", 6, "--out", tmp_path / "s.png", "--model", model_dir, "--device", "cpu",
              "--sampler", "maskgit", "--tokens-out", tmp_path / "s.npy", "--images-dir", tmp_path / "imgs",
              "--seed", 4)
    assert res.exit_code == 0, res.output
    ids, masks = load_pipeline(str(model_dir)).maskgit_prior.generate(6, seed=4, return_masks=True)
    assert np.array_equal(np.load(tmp_path / "s.npy"), ids.numpy())
    assert np.array_equal(np.load(tmp_path / "s.masks.npy"), masks.numpy())  # from the prior's mask head
    res = run(runner, "decode", tmp_path / "s.npy", tmp_path / "back", "--model", model_dir, "--device", "cpu")
    assert res.exit_code == 0, res.output
    for i in (0, 5):
        name = f"sample-seed-4-{i:05d}.png"  # named as the AR prior's samples are
        back, sampled = (np.asarray(Image.open(tmp_path / folder / name)) for folder in ("back", "imgs"))
        assert np.array_equal(back, sampled)


def test_maskgit_training_resumes_exactly_where_it_stopped(tmp_path):
    rng = np.random.default_rng(0)
    tokens, masks = rng.integers(0, 6, (64, 5)), rng.integers(0, 3, (64, 5))
    labels = rng.integers(0, 2, 64)
    cfg = TrainConfig(steps=8, batch_size=16, warmup=2, checkpoint_every=4)

    def fresh():
        return tiny_maskgit_prior(6, 5, num_masks=3, num_classes=2)

    straight = fresh()
    train_prior(straight, tokens, labels, cfg, tmp_path / "a", torch.device("cpu"), masks=masks)

    class Stop(Exception):
        pass

    def stop_after_5(step, stats):
        if step == 5:
            raise Stop

    with pytest.raises(Stop):
        train_prior(fresh(), tokens, labels, cfg, tmp_path / "b", torch.device("cpu"), masks=masks,
                    on_step=stop_after_5)
    assert latest_checkpoint(tmp_path / "b").name == "step-0000004"
    resumed = fresh()
    info = train_prior(resumed, tokens, labels, cfg, tmp_path / "b", torch.device("cpu"), resume=True, masks=masks)
    assert info["resumed_from"] == 4
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_benchmark_times_both_samplers(runner, model_with_both_priors, tmp_path):
    maskgit_only = save_pipeline(tmp_path / "only-maskgit", tiny_tokenizer(), maskgit_prior=tiny_maskgit_prior(4, 2))
    res = run(runner, "benchmark", "--tokens", 2, "--model", model_with_both_priors, "--model", maskgit_only,
              "--repeats", 1, "--json", tmp_path / "b.json", "--device", "cpu")
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "b.json").read_text())
    assert [r["model"] for r in result["rows"]] == [str(model_with_both_priors)]
    assert [r["model"] for r in result["maskgit_rows"]] == [str(model_with_both_priors), str(maskgit_only)]
    for r in result["maskgit_rows"]:
        assert r["steps"] == 2 and r["ms_per_image_b1"] > 0 and r["ms_per_image_b64"] > 0
    assert "MaskGIT parallel decoding against the AR prior" in res.stdout


def test_maskgit_training_fits_pictures_resolves_precision_and_names_its_checkpoint_on_ctrl_c(
        runner, model_dir, image_dir, monkeypatch):
    from tokenizer_cli.train import resolve_precision

    args = ["train", "prior", model_dir, "--kind", "maskgit", "--data", image_dir, "--fit", "pad", "--steps", 4,
            "--checkpoint-every", 2, "--layers", 1, "--heads", 2, "--width", 16, "--batch-size", 2, "--device", "cpu"]
    res = run_interrupted_at_step(monkeypatch, lambda: run(runner, *args), "loss", 2)
    assert res.exit_code == 130
    assert res.stderr.splitlines()[-1] == (
        f"Interrupted: the checkpoint of step 2 is kept in {model_dir / 'checkpoints-maskgit'}; rerun the same "
        f"command with --resume to continue from it; {model_dir / 'prior-maskgit.safetensors'} was not written")
    res = run(runner, *args, "--resume")
    assert res.exit_code == 0, res.output
    assert "warning: 1 of 4 pictures are smaller than 28x28 (9x9)" in res.stderr  # pad: the 17x50 is shrunk, not enlarged
    record = json.loads((model_dir / "config.json").read_text())["maskgit_prior_training"]
    assert record["resumed_from"] == 2 and record["precision"] == resolve_precision("auto", torch.device("cpu"))
    assert load_pipeline(str(model_dir)).maskgit_prior.generate(2, seed=0).shape == (2, 2)
