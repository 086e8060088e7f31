import huggingface_hub

from tokenizer_cli.cli.app import app
from test_hub import make_hub_cache


def test_push_uploads_the_model_files_with_a_card(runner, model_dir, monkeypatch):
    calls = {}

    class RecordingApi:  # stands in for the network; records what would be uploaded
        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls["create"] = (repo_id, private)

        def create_branch(self, repo_id, branch, exist_ok=False):
            calls["branch"] = branch

        def upload_folder(self, folder_path, repo_id, revision=None, allow_patterns=None):
            calls["upload"] = (folder_path, repo_id, revision, allow_patterns)
            return "https://huggingface.co/me/tiny/commit/abc"

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    res = runner.invoke(app, ["push", str(model_dir), "me/tiny", "--private", "--revision", "v1"])
    assert res.exit_code == 0, res.output
    assert calls["create"] == ("me/tiny", True) and calls["branch"] == "v1"
    folder, repo, rev, patterns = calls["upload"]
    assert folder == str(model_dir) and repo == "me/tiny" and rev == "v1"
    assert "*.safetensors" in patterns and "checkpoints" not in " ".join(patterns)
    assert "An mvq image tokenizer" in (model_dir / "README.md").read_text()
    assert "commit/abc" in res.stdout


def test_push_offline_fails_cleanly(runner, model_dir, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    res = runner.invoke(app, ["push", str(model_dir), "me/tiny"])
    assert res.exit_code == 1 and "push to me/tiny failed" in res.stderr and "Traceback" not in res.output


def test_push_bad_args(runner, model_dir, tmp_path):
    res = runner.invoke(app, ["push", str(model_dir), "not-a-repo-id"])
    assert res.exit_code == 1 and "repo id" in res.stderr
    res = runner.invoke(app, ["push", str(tmp_path), "me/tiny"])
    assert res.exit_code == 1 and "config.json" in res.stderr


def test_models_lists_shipped_and_cached(runner, model_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    cache = tmp_path / "hf-cache"
    make_hub_cache(cache, "someone/tiny-mvq", model_dir)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    assert "someone/tiny-mvq" in res.stdout
