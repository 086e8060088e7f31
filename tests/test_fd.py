"""Fréchet distance, SSIM, feature extraction and the feature-net classifier, on tiny random data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokenizer_cli.classifier import Classifier, ClassifierConfig, load_feature_net, save_classifier
from tokenizer_cli.fd import activation_stats, extract_features, features_fd, fit_to_net, frechet_distance, ssim
from tokenizer_cli.hub import BadCheckpoint, ModelNotFound


def random_stats(rng, f: int = 6, n: int = 50):
    x = rng.normal(size=(n, f)) @ rng.normal(size=(f, f))  # correlated features
    return activation_stats(x)


def test_activation_stats_are_float64_mean_and_covariance():
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    mu, sigma = activation_stats(x)
    assert mu.dtype == sigma.dtype == np.float64 and sigma.shape == (3, 3)
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0))
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False))
    with pytest.raises(ValueError):
        activation_stats(x[:1])


def test_fd_of_identical_stats_is_zero():
    mu, sigma = random_stats(np.random.default_rng(0))
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_fd_matches_the_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 3, size=5), rng.uniform(0.1, 3, size=5)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_fd_is_symmetric_and_positive():
    rng = np.random.default_rng(2)
    s1, s2 = random_stats(rng), random_stats(rng)
    d12, d21 = frechet_distance(*s1, *s2), frechet_distance(*s2, *s1)
    assert d12 > 0 and d12 == pytest.approx(d21, rel=1e-9)


def test_fd_agrees_with_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(3)
    (mu1, s1), (mu2, s2) = random_stats(rng, f=16, n=100), random_stats(rng, f=16, n=100)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fd_of_rank_deficient_covariances_is_finite():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(3, 8)), rng.normal(size=(4, 8)) + 1  # fewer samples than features
    d = features_fd(a, b)
    assert np.isfinite(d) and d > 0
    assert features_fd(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fd_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_ssim_is_one_on_identical_images_and_falls_with_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28, generator=g)
    np.testing.assert_allclose(ssim(x, x).numpy(), 1.0, atol=1e-6)
    scores = [ssim(x, (x + s * torch.randn(x.shape, generator=g)).clamp(0, 1)).mean().item() for s in (0.05, 0.2, 0.5)]
    assert 1.0 > scores[0] > scores[1] > scores[2]


def test_ssim_matches_the_reference_algorithm():
    """skimage's structural_similarity(gaussian_weights=True, sigma=1.5): scipy's Gaussian, border cropped."""
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(5)
    x = rng.random((28, 28))
    y = np.clip(x + 0.1 * rng.normal(size=x.shape), 0, 1)

    def blur(a):
        return ndimage.gaussian_filter(a, 1.5, truncate=3.5)  # radius 5: an 11x11 window

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    expected = s[5:-5, 5:-5].mean()
    assert ssim(torch.tensor(x)[None, None], torch.tensor(y)[None, None]).item() == pytest.approx(expected, rel=1e-6)


def test_ssim_per_channel_and_small_images():
    x = torch.rand(2, 3, 8, 8)
    assert ssim(x, x).shape == (2,)
    np.testing.assert_allclose(ssim(x, x).numpy(), 1.0, atol=1e-6)
    assert (ssim(x, 1 - x) < 0.5).all()


def test_fit_to_net_converts_channels_and_size():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert fit_to_net(x, 28, 1).shape == (2, 1, 28, 28)
    grey = torch.rand(2, 1, 28, 28)
    assert torch.equal(fit_to_net(grey, 28, 1), grey)
    assert fit_to_net(grey, 28, 3).shape == (2, 3, 28, 28)


def tiny_net(width: int = 4) -> Classifier:
    torch.manual_seed(0)
    return Classifier(ClassifierConfig(width=width)).eval()


def test_extract_features_from_uint8_arrays_floats_and_batches():
    net = tiny_net()
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    floats = torch.from_numpy(images).float()[:, None] / 127.5 - 1
    a = extract_features(net, images, batch_size=3)
    b = extract_features(net, floats, batch_size=7)
    c = extract_features(net, [floats[:2], floats[2:]])
    assert a.shape == (7, net.feature_size) and a.dtype == np.float64
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)


def test_classifier_save_load_round_trip(tmp_path):
    net = tiny_net()
    net.train()
    net(torch.rand(16, 1, 28, 28) * 2 - 1)  # move the BatchNorm running stats off their defaults
    net.eval()
    save_classifier(tmp_path / "fnet", net, {"test_accuracy": 0.5}, readme="# tiny\n")
    loaded, info = load_feature_net(tmp_path / "fnet")
    assert info["test_accuracy"] == 0.5 and (tmp_path / "fnet" / "README.md").is_file()
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(loaded.features(x), net.features(x))
        assert loaded(x).shape == (5, 10)


def test_load_feature_net_errors(tmp_path):
    with pytest.raises(ModelNotFound, match="feature net"):
        load_feature_net(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadCheckpoint, match="classifier.json"):
        load_feature_net(tmp_path / "empty")
    save_classifier(tmp_path / "fnet", tiny_net())
    (tmp_path / "fnet" / "classifier.safetensors").write_bytes(b"junk")
    with pytest.raises(BadCheckpoint, match="safetensors"):
        load_feature_net(tmp_path / "fnet")
    for text, message in (("[" * 100_000 + "]" * 100_000, "JSON nested too deeply"), ("{", "not valid JSON")):
        (tmp_path / "fnet" / "classifier.json").write_text(text)
        with pytest.raises(BadCheckpoint, match=f"classifier.json: {message}"):
            load_feature_net(tmp_path / "fnet")
    (tmp_path / "fnet" / "classifier.json").write_bytes(b"\xff\xfe")
    with pytest.raises(BadCheckpoint, match="classifier.json: not UTF-8"):
        load_feature_net(tmp_path / "fnet")
