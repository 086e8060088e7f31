"""scripts/codebook_size.py (the rows, their commands, the report) and scripts/maskgit_steps.py (FD against
steps, checked against `Pipeline.evaluate`) on real files: a tiny model with both priors, images written here."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path

import pytest
from PIL import Image

from tokenizer_cli import Pipeline

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_codebook_size_rows_are_the_papers_sizes_and_only_plain_vq_skips_restarts(tmp_path, capsys):
    study = load_script("codebook_size")
    rows = study.rows()
    assert len({r.name for r in rows}) == len(rows) == 18
    vocab = {r.name: r.vocab for r in rows}
    assert [vocab[f"fsq-2^{b}"] for b in (6, 8, 10, 12, 14)] == [64, 240, 1000, 4375, 15360]
    assert vocab["vq-2^14"] == vocab["vqplain-2^14"] == 16384 and vocab["mvq-2^10"] == 1024
    assert study.main(["--out", str(tmp_path), "--dry-run", "--steps", "7", "--prior-steps", "5"]) == 0
    out = capsys.readouterr().out
    tokenizer = [shlex.split(line) for line in out.splitlines() if " train tokenizer " in line]
    assert len(tokenizer) == 18
    for cmd in tokenizer:
        name = Path(cmd[3]).name
        assert ("--dead-threshold" in cmd) == name.startswith("vqplain"), name
        assert cmd[cmd.index("--tokens") + 1] == "49" and cmd[cmd.index("--layout") + 1] == "grid"
        assert cmd[cmd.index("--steps") + 1] == "7" and cmd[cmd.index("--base-channels") + 1] == "16"
    priors = [line for line in out.splitlines() if " train prior " in line]
    assert len(priors) == 18 and all("--kind maskgit" in p and "--steps 5" in p for p in priors)
    evals = [line for line in out.splitlines() if " eval " in line]
    assert len(evals) == 18 and all("--sampler maskgit --steps 8" in e for e in evals)


def test_codebook_size_report_tables_and_plots_what_is_done(tmp_path):
    study = load_script("codebook_size")
    for name, usage, fd in (("fsq-2^10", 1.0, 50.0), ("vq-2^10", 0.4, 70.0), ("vqplain-2^10", 0.1, 90.0)):
        d = tmp_path / "runs" / name
        d.mkdir(parents=True)
        (d / "eval.json").write_text(json.dumps({"codebook_usage": usage, "tokens_used": int(usage * 1000),
                                                 "perplexity": 300.0, "mse": 0.02, "psnr": 23.0, "recon_fd": 40.0,
                                                 "generation_fd": fd, "images": 10000}))
    assert study.main(["--out", str(tmp_path), "--report"]) == 0
    md = (tmp_path / "results.md").read_text()
    assert "| fsq-2^10 | FSQ | 1,000 | 1,000 | 100.0% |" in md
    assert "| vqplain-2^10 | VQ without restarts | 1,024 | 100 | 10.0% |" in md
    assert md.index("fsq-2^10") < md.index("| vq-2^10") < md.index("vqplain-2^10")
    assert len(json.loads((tmp_path / "results.json").read_text())["rows"]) == 3
    for png in ("usage_vs_size.png", "fd_vs_size.png", "recon_fd_vs_size.png"):
        with Image.open(tmp_path / png) as img:
            assert img.format == "PNG" and len(img.getcolors(1 << 16) or []) > 10


@pytest.mark.slow
def test_maskgit_steps_measures_the_fd_mvq_eval_measures(model_with_both_priors, tmp_path):
    root = tmp_path / "pics"
    root.mkdir()
    for i in range(6):
        Image.effect_noise((28, 28), 20 + 10 * i).save(root / f"{i}.png")
    steps = load_script("maskgit_steps")
    out = tmp_path / "out"
    args = [f"tiny={model_with_both_priors}", "--steps", "1", "2", "5", "--data", str(root), "--out", str(out)]
    assert steps.main([*args, "--repeats", "0"]) == 0
    rows = json.loads((out / "steps.json").read_text())["rows"]
    assert [r["sampler"] for r in rows] == ["AR", "MaskGIT S=1", "MaskGIT S=2"]  # S capped at T=2
    pipe = Pipeline.from_pretrained(model_with_both_priors, device="cpu")
    for r in rows:
        sampler = {"sampler": "ar"} if r["steps"] is None else {"sampler": "maskgit", "steps": r["steps"]}
        want = pipe.evaluate(data=str(root), seed=0, **sampler).generation_fd
        assert r["generation_fd"] == pytest.approx(want, rel=1e-4), r["sampler"]
    assert "ms_per_image_b1" not in rows[0]
    assert steps.main([*args, "--repeats", "1", "--time-only"]) == 0  # the FDs kept, the times added
    timed = json.loads((out / "steps.json").read_text())["rows"]
    assert [r["generation_fd"] for r in timed] == [r["generation_fd"] for r in rows]
    assert all(r["ms_per_image_b1"] > 0 and r["ms_per_image_b64"] > 0 for r in timed)
    md = (out / "steps.md").read_text()
    assert "| tiny | 2 | MaskGIT S=1 |" in md and "## Equal quality" in md
    assert (out / "fd_vs_steps.png").is_file() and (out / "fd_vs_time.png").is_file()


def test_maskgit_steps_refuses_two_models_of_one_label_and_a_model_without_an_ar_prior(model_with_both_priors,
                                                                                         model_with_prior, model_dir,
                                                                                         tmp_path):
    steps = load_script("maskgit_steps")
    with pytest.raises(SystemExit, match="two models have the same label"):
        steps.main([f"x={model_with_both_priors}", f"x={model_with_prior}", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="needs an AR prior, the baseline of its rows"):
        steps.main([f"a={model_with_both_priors}", f"b={model_dir}", "--out", str(tmp_path)])
    assert not (tmp_path / "steps.json").exists()  # checked before anything was measured


def test_ship_prior_adds_a_float16_maskgit_prior_beside_a_shipped_model_and_refuses_another_tokenizer(tmp_path):
    import shutil

    import torch
    from safetensors import safe_open

    from conftest import tiny_maskgit_prior, tiny_prior, tiny_tokenizer
    from tokenizer_cli.hub import read_config, save_pipeline, weights_digest

    weights = tmp_path / "weights"
    tok = tiny_tokenizer()
    save_pipeline(weights / "tiny", tok, tiny_prior(tok.vocab_size, 2))
    run = tmp_path / "run"
    shutil.copytree(weights / "tiny", run)
    save_pipeline(run, tok, maskgit_prior=tiny_maskgit_prior(tok.vocab_size, 2))
    before = weights_digest(weights / "tiny")
    ship = load_script("ship_prior")
    assert ship.main([str(run), "tiny", "--weights", str(weights)]) == 0
    with safe_open(str(weights / "tiny" / "prior-maskgit.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    cfg = read_config(weights / "tiny")
    assert cfg.maskgit_prior == read_config(run).maskgit_prior and cfg.prior is not None
    assert weights_digest(weights / "tiny") == before  # the AR prior's evaluation stays valid
    assert "MaskGIT" in (weights / "tiny" / "README.md").read_text()
    assert Pipeline.from_pretrained(weights / "tiny").sample_tokens(3, sampler="maskgit", seed=0).ids.shape == (3, 2)

    other = tmp_path / "other"
    save_pipeline(other, tiny_tokenizer(kind="vq"), maskgit_prior=tiny_maskgit_prior(4, 2))
    with pytest.raises(SystemExit, match="holds another tokenizer"):
        ship.main([str(other), "tiny", "--weights", str(weights)])


def test_step_timing_steps_the_optimizer_and_the_studies_use_it():
    load_script("profile_maskgit")  # puts scripts/ on the path, as the studies do for `comparison`
    from comparison.timing import cpu_seconds_per_step

    import torch

    layer = torch.nn.Linear(4, 1)
    before = layer.weight.detach().clone()
    calls = []

    def loss():
        calls.append(1)
        return layer(torch.ones(2, 4)).pow(2).sum()

    seconds = cpu_seconds_per_step(loss, torch.optim.SGD(layer.parameters(), lr=0.1), warmup=1, repeats=2)
    assert len(calls) == 3 and isinstance(seconds, float)
    assert not torch.equal(before, layer.weight)
    assert load_script("colour_study").cpu_seconds_per_step is cpu_seconds_per_step
