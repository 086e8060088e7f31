"""Fréchet distance (FD) in a classifier's feature space, SSIM, and the passes that feed them.

FD between two sets of features is ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2), as in FID
(Heusel et al. 2017, arXiv 1706.08500) but in the features of our own classifier (see classifier.py).
The matrix square root is taken in float64 through symmetric eigendecompositions only:
tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2), whose argument is symmetric PSD, so no scipy and no
complex parts. SSIM is Wang et al. 2004: 11x11 Gaussian window (sigma 1.5) on [0, 1] pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .images import to_float

Images = np.ndarray | torch.Tensor | Iterable[torch.Tensor]  # uint8 (N, H, W[, C]), float (N, C, H, W), or batches


# ---------------------------------------------------------------- Fréchet distance


def activation_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (F,), covariance (F, F)) of features (N, F), both float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"activation_stats needs features of shape (N >= 2, F), got {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix; tiny negative eigenvalues (rounding) count as 0."""
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2), in float64, >= 0."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    s1, s2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2  # exactly symmetric, so eigh applies
    r1 = _sqrt_psd(s1)
    middle = r1 @ s2 @ r1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean, 0.0))


def features_fd(features1: np.ndarray, features2: np.ndarray) -> float:
    """FD between two feature sets (N1, F) and (N2, F)."""
    return frechet_distance(*activation_stats(features1), *activation_stats(features2))


# ---------------------------------------------------------------- SSIM


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """The 1-D Gaussian (size,), summing to 1, whose outer product with itself is SSIM's 2-D window."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
         data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per image, (B,), of images (B, C, H, W) in [0, data_range]; channels are averaged.

    Statistics over valid window positions only (no padding), as in the reference implementation;
    images smaller than the window use a window as large as the image (rounded down to odd).
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.double(), y.double()  # E[x^2] - E[x]^2 cancels badly in float32
    size = min(window, x.shape[-2], x.shape[-1])
    size -= 1 - size % 2
    c = x.shape[1]
    g = _gaussian_window(size, sigma).to(x.device)
    rows, cols = g.view(1, 1, size, 1).expand(c, 1, size, 1), g.view(1, 1, 1, size).expand(c, 1, 1, size)

    def blur(t: torch.Tensor) -> torch.Tensor:  # the 2-D window as two 1-D passes: 2k products a pixel, not k^2
        return F.conv2d(F.conv2d(t, rows, groups=c), cols, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=(1, 2, 3)).float()


# ---------------------------------------------------------------- features


def _batches(images: Images, batch_size: int) -> Iterator[torch.Tensor]:
    """Float (B, C, H, W) batches in [-1, 1] from uint8 arrays, float tensors, or an iterable of batches."""
    if isinstance(images, (np.ndarray, torch.Tensor)):
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            is_uint8 = chunk.dtype == (torch.uint8 if isinstance(chunk, torch.Tensor) else np.uint8)
            yield to_float(chunk) if is_uint8 else torch.as_tensor(chunk).float()
    else:
        yield from images


def fit_to_net(x: torch.Tensor, image_size: int, channels: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, channels, image_size, image_size): luma or repeated grey, antialiased resize."""
    if x.shape[1] != channels:
        if channels == 1:
            luma = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)[: x.shape[1]]
            x = (x * (luma / luma.sum())[None, :, None, None]).sum(dim=1, keepdim=True)
        else:
            x = x.expand(-1, channels, -1, -1)
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x


@torch.inference_mode()
def extract_features(net, images: Images, batch_size: int = 500, device: torch.device | str = "cpu",
                     on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Penultimate features (N, F) float64 of `net` (a classifier.Classifier) for images in [-1, 1] or uint8."""
    net.eval().to(device)
    cfg, out = net.cfg, []
    for x in _batches(images, batch_size):
        x = fit_to_net(x.to(device).float(), cfg.image_size, cfg.channels)
        out.append(net.features(x).double().cpu().numpy())
        if on_batch is not None:
            on_batch(len(x))
    if not out:
        raise ValueError("extract_features got no images")
    return np.concatenate(out)


class ReconstructionQuality:
    """Called with each batch of images and their reconstructions (both (B, C, H, W) in [-1, 1]) during the one
    reconstruction pass (`evaluate.reconstruction_metrics(on_pair=...)`); `result()` gives (features of the
    images (N, F), features of the reconstructions (N, F), mean SSIM image vs reconstruction)."""

    def __init__(self, net, device: torch.device | str = "cpu"):
        self.net, self.device = net.eval().to(device), device
        self.real: list[np.ndarray] = []
        self.recon: list[np.ndarray] = []
        self.ssims: list[torch.Tensor] = []

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        y = y.float().clamp(-1.0, 1.0)
        self.ssims.append(ssim((x + 1) / 2, (y + 1) / 2).cpu())
        self.real.append(extract_features(self.net, [x], device=self.device))
        self.recon.append(extract_features(self.net, [y], device=self.device))

    def result(self) -> tuple[np.ndarray, np.ndarray, float]:
        return np.concatenate(self.real), np.concatenate(self.recon), float(torch.cat(self.ssims).mean())


@torch.inference_mode()
def generated_images(prior, tokenizer, n: int, seed: int, batch_size: int = 1000,
                     device: torch.device | str = "cpu", **options) -> Iterator[torch.Tensor]:
    """Sample n token sequences with the prior (one call, seeded; `options` go to its generate, as MaskGIT's
    steps), then yield decoded (B, C, H, W) batches.

    A class-conditional prior gets the classes in turn (0, 1, ..., 0, 1, ...): a balanced set like the test split.
    """
    labels = torch.arange(n) % prior.cfg.num_classes if prior.cfg.num_classes > 0 else None
    ids, masks = prior.generate(n, seed=seed, batch_size=batch_size, labels=labels, return_masks=True,
                               **options)  # (n, T)
    tokenizer.eval().to(device)
    g = torch.Generator(device=torch.device(device)).manual_seed(seed)  # MVQ masks drawn from p(m | k) ...
    for start in range(0, n, batch_size):
        chunk_masks = None if masks is None else masks[start : start + batch_size].to(device)  # ... or by the prior
        yield tokenizer.decode(ids[start : start + batch_size].to(device), chunk_masks,
                               generator=g).float().clamp(-1.0, 1.0)
