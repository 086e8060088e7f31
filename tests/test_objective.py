"""The tokenizer's objective beyond MSE (adversarial patch loss, feature distance) and fine-tuning (--init-from)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tokenizer_cli.checkpoint import latest_checkpoint
from tokenizer_cli.classifier import Classifier, ClassifierConfig
from tokenizer_cli.cli.app import app
from tokenizer_cli.config import QuantizerConfig, TokenizerConfig
from tokenizer_cli.losses import FeatureDistance, ObjectiveConfig, TokenizerObjective, hinge_critic_loss
from tokenizer_cli.models import Tokenizer
from tokenizer_cli.pipeline import load_pipeline
from tokenizer_cli.train import TrainConfig, train_tokenizer

from conftest import run_interrupted_at_step
from test_train import blobs


def colour_tokenizer(seed=0):
    torch.manual_seed(seed)
    q = QuantizerConfig(kind="fsq", levels=[4, 4])
    return Tokenizer(TokenizerConfig(image_size=16, channels=3, tokens=4, layout="grid", base_channels=8, quantizer=q))


def tiny_feature_net():
    torch.manual_seed(1)
    return Classifier(ClassifierConfig(image_size=16, channels=3, num_classes=3, width=8)).eval()


def pictures(n=8):
    return torch.rand(n, 3, 16, 16) * 2 - 1


def test_before_the_warm_up_ends_the_objective_is_mse_and_the_critic_is_untouched():
    tok = colour_tokenizer()
    obj = TokenizerObjective(tok, ObjectiveConfig(adversarial_weight=0.5, adversarial_start=10))
    x = pictures()
    loss, stats = obj(x, step=9)
    recon, q = tok(x)
    assert torch.allclose(loss, torch.nn.functional.mse_loss(recon, x) + q.loss)
    loss.backward()
    assert all(p.grad is None for p in obj.critic.parameters())
    assert "critic" not in stats


def test_the_critic_learns_only_from_its_own_loss_and_the_tokenizer_only_from_its_terms():
    tok = colour_tokenizer()
    obj = TokenizerObjective(tok, ObjectiveConfig(adversarial_weight=0.5, adversarial_start=0))
    x = pictures()
    loss, stats = obj(x, step=0)
    loss.backward()
    assert stats["critic"] > 0 and all(p.grad is not None for p in obj.critic.parameters())
    critic_grads = [p.grad.clone() for p in obj.critic.parameters()]
    tok_grads = [p.grad.clone() for p in tok.parameters() if p.grad is not None]

    # the critic's gradient is that of the hinge loss on real and (detached) reconstructed pictures alone
    obj.zero_grad(set_to_none=True)
    recon = tok(x)[0].detach()
    hinge_critic_loss(obj.critic(x), obj.critic(recon)).backward()
    for a, p in zip(critic_grads, obj.critic.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)
    # and the tokenizer's gradient differs from MSE's alone (the adversarial term reaches it)
    obj.zero_grad(set_to_none=True)
    recon, q = tok(x)
    (torch.nn.functional.mse_loss(recon, x) + q.loss).backward()
    plain = [p.grad for p in tok.parameters() if p.grad is not None]
    assert any(not torch.allclose(a, b) for a, b in zip(tok_grads, plain))


def test_feature_distance_is_zero_for_equal_pictures_and_trains_nothing_of_the_net():
    net = tiny_feature_net()
    dist = FeatureDistance(net)
    x, y = pictures(), pictures()
    assert float(dist(x, x)) == pytest.approx(0.0, abs=1e-6)
    y.requires_grad_(True)
    d = dist(x, y)
    d.backward()
    assert d.item() > 0 and y.grad is not None and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    assert not net.training  # its BatchNorm keeps its statistics


def test_feature_term_is_in_the_loss_and_the_feature_net_is_no_parameter():
    tok, net = colour_tokenizer(), tiny_feature_net()
    obj = TokenizerObjective(tok, ObjectiveConfig(feature_weight=2.0), net)
    x = pictures()
    loss, stats = obj(x, step=0)
    recon, q = tok(x)
    expected = torch.nn.functional.mse_loss(recon, x) + q.loss + 2.0 * FeatureDistance(net)(x, recon)
    assert torch.allclose(loss, expected, atol=1e-6) and stats["feature"] > 0
    assert {id(p) for p in obj.parameters()} == {id(p) for p in tok.parameters()}


def test_adversarial_training_resumes_exactly_where_it_stopped(tmp_path):
    images = (np.random.default_rng(0).random((32, 16, 16, 3)) * 255).astype(np.uint8)
    cfg = TrainConfig(steps=6, batch_size=8, warmup=2, checkpoint_every=3)
    objective = ObjectiveConfig(adversarial_weight=0.5, adversarial_start=2)
    straight = colour_tokenizer()
    train_tokenizer(straight, images, cfg, tmp_path / "a", torch.device("cpu"), objective=objective)

    class Stop(Exception):
        pass

    def stop_after_4(step, stats):
        if step == 4:
            raise Stop

    with pytest.raises(Stop):
        train_tokenizer(colour_tokenizer(), images, cfg, tmp_path / "b", torch.device("cpu"), on_step=stop_after_4,
                        objective=objective)
    assert (latest_checkpoint(tmp_path / "b") / "tokenizer-critic.safetensors").is_file()
    resumed = colour_tokenizer(seed=5)  # a fresh process builds a fresh model
    info = train_tokenizer(resumed, images, cfg, tmp_path / "b", torch.device("cpu"), resume=True,
                           objective=objective)
    assert info["resumed_from"] == 3
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


@pytest.fixture
def grey_folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(blobs(16, 28)):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return folder


TINY = ["--quantizer", "fsq", "--levels", "4,4", "--tokens", "49", "--layout", "grid", "--base-channels", "4",
        "--batch-size", "8", "--device", "cpu"]


def test_cli_records_the_objective_and_the_feature_net(runner, grey_folder, tmp_path):
    out = tmp_path / "m"
    res = runner.invoke(app, ["train", "tokenizer", str(out), "--data", str(grey_folder), *TINY, "--steps", "3",
                              "--adversarial-weight", "0.2", "--adversarial-start", "1", "--feature-weight", "0.5"])
    assert res.exit_code == 0, res.output
    record = json.loads((out / "config.json").read_text())["training"]
    assert (record["adversarial_weight"], record["adversarial_start"], record["feature_weight"]) == (0.2, 1, 0.5)
    assert record["feature_net"] == "fd-fmnist-classifier"  # the shipped net made for 28x28 grey pictures
    assert "init_from" not in record
    plain = tmp_path / "plain"
    assert runner.invoke(app, ["train", "tokenizer", str(plain), "--data", str(grey_folder), *TINY,
                               "--steps", "1"]).exit_code == 0
    record = json.loads((plain / "config.json").read_text())["training"]
    assert not {"adversarial_weight", "feature_weight", "feature_net", "init_from"} & set(record)


def test_cli_adversarial_training_interrupted_then_resumed(runner, grey_folder, tmp_path, monkeypatch):
    out = tmp_path / "m"
    args = ["train", "tokenizer", str(out), "--data", str(grey_folder), *TINY, "--steps", "4",
            "--checkpoint-every", "2", "--adversarial-weight", "0.2"]
    res = run_interrupted_at_step(monkeypatch, lambda: runner.invoke(app, args), "mse", 2)
    assert res.exit_code == 130 and "--resume" in res.stderr
    res = runner.invoke(app, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["training"]["resumed_from"] == 2


def test_init_from_starts_from_the_models_weights_and_keeps_its_architecture(runner, grey_folder, tmp_path):
    first = tmp_path / "first"
    assert runner.invoke(app, ["train", "tokenizer", str(first), "--data", str(grey_folder), *TINY,
                               "--steps", "2"]).exit_code == 0
    tuned = tmp_path / "tuned"
    res = runner.invoke(app, ["train", "tokenizer", str(tuned), "--data", str(grey_folder), "--init-from", str(first),
                              "--steps", "1", "--lr", "0", "--batch-size", "8", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert f"from {first}" in res.output.replace("\n", "")
    a, b = load_pipeline(str(first)).tokenizer, load_pipeline(str(tuned)).tokenizer
    assert a.cfg == b.cfg
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name  # a learning rate of 0 changes nothing
    assert json.loads((tuned / "config.json").read_text())["training"]["init_from"] == str(first)


def test_init_from_refuses_architecture_options_and_feature_net_misuse(runner, grey_folder, tmp_path):
    first = tmp_path / "first"
    assert runner.invoke(app, ["train", "tokenizer", str(first), "--data", str(grey_folder), *TINY,
                               "--steps", "1"]).exit_code == 0
    res = runner.invoke(app, ["train", "tokenizer", str(tmp_path / "x"), "--data", str(grey_folder), "--init-from",
                              str(first), "--tokens", "16", "--base-channels", "8", "--device", "cpu"])
    assert res.exit_code == 1 and "drop --tokens, --base-channels" in res.stderr
    res = runner.invoke(app, ["train", "tokenizer", str(tmp_path / "x"), "--data", str(grey_folder), *TINY,
                              "--feature-net", "fd-fmnist-classifier"])
    assert res.exit_code == 1 and "--feature-weight" in res.stderr
    res = runner.invoke(app, ["train", "tokenizer", str(tmp_path / "x"), "--data", str(grey_folder), *TINY,
                              "--feature-weight", "1", "--feature-net", "fd-pictures-classifier"])
    assert res.exit_code == 1 and "64x64x3" in res.stderr
    assert not (tmp_path / "x").exists()


def test_resuming_with_another_objective_is_one_line_naming_what_it_started_with(runner, grey_folder, tmp_path,
                                                                                  monkeypatch):
    out = tmp_path / "m"
    args = ["train", "tokenizer", str(out), "--data", str(grey_folder), *TINY, "--steps", "4", "--checkpoint-every",
            "2", "--adversarial-weight", "0.2"]
    assert run_interrupted_at_step(monkeypatch, lambda: runner.invoke(app, args), "mse", 2).exit_code == 130
    plain = [a for a in args if a not in ("--adversarial-weight", "0.2")]
    res = runner.invoke(app, [*plain, "--resume"])
    assert res.exit_code == 1
    assert "was trained with --adversarial-weight 0.2 --adversarial-start 0 --feature-weight 0" in res.stderr
    assert "resume with the same options" in res.stderr and "Traceback" not in res.output
    assert runner.invoke(app, [*args, "--resume"]).exit_code == 0


def test_a_critic_needs_pictures_of_16_px(tmp_path):
    q = QuantizerConfig(kind="fsq", levels=[4, 4])
    small = Tokenizer(TokenizerConfig(image_size=8, channels=3, tokens=4, layout="grid", base_channels=4, quantizer=q))
    with pytest.raises(ValueError, match="16 px or more, not 8"):
        TokenizerObjective(small, ObjectiveConfig(adversarial_weight=0.1))


def test_a_feature_net_of_another_shape_is_refused_by_the_library_too():
    q = QuantizerConfig(kind="fsq", levels=[4, 4])
    grey = Tokenizer(TokenizerConfig(image_size=28, channels=1, tokens=4, base_channels=4, quantizer=q))
    colour_net = Classifier(ClassifierConfig(image_size=64, channels=3, width=4))
    with pytest.raises(ValueError, match="made for 64x64x3 pictures, not this tokenizer's 28x28x1"):
        TokenizerObjective(grey, ObjectiveConfig(feature_weight=0.1), feature_net=colour_net)
    TokenizerObjective(grey, ObjectiveConfig(feature_weight=0.1), feature_net=Classifier(ClassifierConfig(width=4)))
