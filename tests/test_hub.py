"""Model resolution: local folder, shipped default, and a Hub repo id read offline from a real cache layout."""

import json
import shutil

import pytest
import torch

from tokenizer_cli import hub
from tokenizer_cli.hub import BadCheckpoint, ModelNotFound, resolve_model, save_pipeline
from tokenizer_cli.pipeline import load_pipeline

from conftest import tiny_tokenizer


def make_hub_cache(cache, repo_id, model_dir, commit="0123456789abcdef0123456789abcdef01234567"):
    """The layout huggingface_hub writes: models--owner--name/{blobs,snapshots/<commit>,refs/main}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in model_dir.iterdir():
        blob = repo / "blobs" / f"blob-{f.name}"
        shutil.copy(f, blob)
        (snap / f.name).symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snap


@pytest.fixture
def offline_cache(tmp_path, monkeypatch, model_dir):
    import huggingface_hub.constants as hc

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    make_hub_cache(cache, "someone/tiny-mvq", model_dir)
    return cache


def test_local_folder_round_trip(model_dir):
    pipe = load_pipeline(str(model_dir))
    ref = tiny_tokenizer()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert torch.equal(pipe.tokenizer.encode(x), ref.encode(x))
    assert pipe.prior is None and pipe.folder == model_dir


def test_hub_id_offline_from_cache(offline_cache, model_dir):
    pipe = load_pipeline("someone/tiny-mvq")
    assert pipe.folder.parent.name == "snapshots"
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    assert torch.equal(pipe.tokenizer.encode(x), load_pipeline(str(model_dir)).tokenizer.encode(x))


def test_hub_id_with_revision_offline(offline_cache):
    assert resolve_model("someone/tiny-mvq@0123456789abcdef0123456789abcdef01234567").is_dir()


def test_hub_id_not_cached_offline(offline_cache):
    with pytest.raises(ModelNotFound, match="not in the Hub cache"):
        resolve_model("someone/other")


def test_local_folder_wins_over_hub_id(offline_cache, tmp_path, monkeypatch, model_dir):
    local = tmp_path / "someone" / "tiny-mvq"
    shutil.copytree(model_dir, local)
    monkeypatch.chdir(tmp_path)
    assert resolve_model("someone/tiny-mvq").resolve() == local.resolve()


def test_shipped_default_by_name(tmp_path, monkeypatch, model_dir):
    root = tmp_path / "weights"
    shutil.copytree(model_dir, root / "tiny-default")
    monkeypatch.setattr(hub, "shipped_root", lambda: root)
    assert resolve_model("tiny-default") == root / "tiny-default"
    assert hub.shipped_models() == ["tiny-default"]


def test_not_a_repo_id_and_not_local():
    with pytest.raises(ModelNotFound, match="not a local folder"):
        resolve_model("./missing/folder/x")


def test_bad_checkpoints(model_dir):
    (model_dir / "tokenizer.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(BadCheckpoint, match="safetensors"):
        load_pipeline(str(model_dir))
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["tokenizer"]["tokens"] = 3
    (model_dir / "config.json").write_text(json.dumps(cfg))
    save_pipeline(model_dir / "other", tiny_tokenizer())
    shutil.copy(model_dir / "other" / "tokenizer.safetensors", model_dir / "tokenizer.safetensors")
    with pytest.raises(BadCheckpoint, match="do not match"):
        load_pipeline(str(model_dir))


def test_save_keeps_records_and_writes_no_temp_files(model_dir):
    from tokenizer_cli.config import FORMAT_VERSION, ReconstructionMetrics

    save_pipeline(model_dir, tiny_tokenizer(), metrics=ReconstructionMetrics(mse=0.1, images=4))
    save_pipeline(model_dir, tiny_tokenizer())  # records not given stay
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["metrics"]["mse"] == 0.1 and cfg["metrics"]["images"] == 4 and cfg["mvq_format"] == FORMAT_VERSION
    assert "4" in (model_dir / "README.md").read_text()  # the card is written from the records
    assert sorted(p.name for p in model_dir.iterdir()) == ["README.md", "config.json", "tokenizer.safetensors"]


def test_a_mistyped_name_gets_the_closest_shipped_names(runner):
    from tokenizer_cli.cli.app import app

    with pytest.raises(ModelNotFound, match=r"did you mean mvq-fmnist-t2\?"):
        resolve_model("mvq-fmnst-t2")  # one letter missing: the one name that close
    with pytest.raises(ModelNotFound, match=r"did you mean mvq-joint-fmnist-t2 or mvq-joint-fmnist-t5\?"):
        resolve_model("mvq-joint-fmnist")  # equally close to two: both, in name order
    with pytest.raises(ModelNotFound) as err:
        resolve_model("resnet")
    assert "did you mean" not in str(err.value)  # nothing close: no guess
    res = runner.invoke(app, ["encode", "x.png", "t.npy", "--model", "fsq-picture-t64"])
    assert res.exit_code == 1 and "did you mean fsq-pictures-t64?" in res.stderr


def test_a_models_why_goes_into_its_card_and_survives_a_rewrite(tmp_path):
    from conftest import tiny_tokenizer
    from tokenizer_cli.hub import read_config, save_pipeline, update_records, write_config

    folder = tmp_path / "m"
    save_pipeline(folder, tiny_tokenizer())
    assert "Why this design" not in (folder / "README.md").read_text()
    cfg = read_config(folder)
    cfg.other["why"] = "A grid beat the 1d layout at equal CPU time."
    write_config(folder, cfg)
    update_records(folder)  # any later rewrite keeps it
    card = (folder / "README.md").read_text()
    assert "## Why this design\n\nA grid beat the 1d layout at equal CPU time." in card


@pytest.mark.parametrize("sampled, saved, kept", [
    ("AR prior", "maskgit", True), ("AR prior", "ar", False),
    ("MaskGIT prior, 8 steps", "ar", True), ("MaskGIT prior, 8 steps", "maskgit", False),
    (None, "maskgit", True),  # records from before MaskGIT: theirs was the AR prior
])
def test_an_evaluation_goes_with_the_prior_it_sampled_with(tmp_path, sampled, saved, kept):
    from conftest import tiny_maskgit_prior, tiny_prior, tiny_tokenizer

    from tokenizer_cli.config import EvalResult
    from tokenizer_cli.hub import read_config, save_pipeline

    tok = tiny_tokenizer("vq")
    folder = save_pipeline(tmp_path / "m", tok, tiny_prior(tok.vocab_size, 2),
                           maskgit_prior=tiny_maskgit_prior(tok.vocab_size, 2),
                           eval=EvalResult(generation_fd=12.5, sampler=sampled))
    new = {"ar": {"prior": tiny_prior(tok.vocab_size, 2)},
           "maskgit": {"maskgit_prior": tiny_maskgit_prior(tok.vocab_size, 2)}}
    save_pipeline(folder, tok, **new[saved])
    assert (read_config(folder).eval is not None) == kept
    save_pipeline(folder, tok, **new[saved], eval=EvalResult(generation_fd=1.0))  # given: it is what is written
    assert read_config(folder).eval.generation_fd == 1.0


def test_an_evaluation_without_a_prior_goes_when_one_comes(tmp_path):
    from conftest import tiny_maskgit_prior, tiny_tokenizer

    from tokenizer_cli.config import EvalResult
    from tokenizer_cli.hub import read_config, save_pipeline

    tok = tiny_tokenizer("vq")
    folder = save_pipeline(tmp_path / "m", tok, eval=EvalResult(recon_fd=3.0))
    save_pipeline(folder, tok)  # the same tokenizer saved again: the evaluation holds
    assert read_config(folder).eval.recon_fd == 3.0
    save_pipeline(folder, tok, maskgit_prior=tiny_maskgit_prior(tok.vocab_size, 2))
    assert read_config(folder).eval is None


def test_an_evaluation_goes_with_another_tokenizer(tmp_path):
    from conftest import tiny_tokenizer

    from tokenizer_cli.config import EvalResult
    from tokenizer_cli.hub import read_config, save_pipeline

    folder = save_pipeline(tmp_path / "m", tiny_tokenizer("vq"), eval=EvalResult(recon_fd=3.0))
    other = tiny_tokenizer("vq")
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    save_pipeline(folder, other)
    assert read_config(folder).eval is None
