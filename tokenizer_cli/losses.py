"""A tokenizer's training objective: pixel MSE and the quantizer's loss, and optionally VQGAN's adversarial patch
loss and a feature distance in one of the project's feature nets (a perceptual loss).

- `PatchCritic`: a small PatchGAN critic, a logit per overlapping patch (about 34 px across), trained with the
  hinge loss; the tokenizer's adversarial term is switched on after a warm-up (`adversarial_start`) and scaled, as
  in VQGAN, by the ratio of the MSE's to the adversarial term's gradient norms at the decoder's output layer.
- `FeatureDistance`: LPIPS-style, the squared distance of unit-normalised activations after each conv stage of a
  frozen `classifier.Classifier` (for 64x64 colour pictures: fd-pictures-classifier). Training on the features FD
  is measured in favours FD; PSNR and SSIM are the independent judges of such a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .classifier import Classifier


@dataclass
class ObjectiveConfig:
    adversarial_weight: float = 0.0  # 0: no critic
    adversarial_start: int = 0  # steps of MSE alone before the critic and its term start
    feature_weight: float = 0.0  # 0: no feature distance

    def __post_init__(self):
        if self.adversarial_weight < 0 or self.feature_weight < 0 or self.adversarial_start < 0:
            raise ValueError("adversarial_weight, adversarial_start and feature_weight must be >= 0")


class PatchCritic(nn.Module):
    """(B, C, H, W) in [-1, 1] -> (B, 1, h, w) logits, one per overlapping patch (H >= 16)."""

    def __init__(self, channels: int, width: int = 32):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.GroupNorm(8, 2 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 2 * w, 4, stride=1, padding=1), nn.GroupNorm(8, 2 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 1, 4, stride=1, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def hinge_critic_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


class FeatureDistance(nn.Module):
    """Mean over conv stages of the squared distance of channel-normalised activations of a frozen classifier."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.net = classifier.eval().requires_grad_(False)
        # after each conv+BN+ReLU block of Classifier.body: conv w, pool, conv 2w, pool, conv 4w, conv 4w
        self.taps = [i for i, layer in enumerate(self.net.body) if isinstance(layer, nn.Sequential)]

    def train(self, mode: bool = True):  # the classifier's BatchNorm stays in eval mode
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, y]).float()
        total = h.new_zeros(())
        for i, layer in enumerate(self.net.body):
            h = layer(h)
            if i in self.taps:
                a, b = F.normalize(h, dim=1).chunk(2)
                total = total + (a - b).pow(2).sum(1).mean()
            if i == self.taps[-1]:
                break
        return total / len(self.taps)


def feature_net_mismatch(net: Classifier, image_size: int, channels: int) -> str | None:
    """Why `net` cannot measure a feature distance on pictures of this shape, or None where it can."""
    if (net.cfg.image_size, net.cfg.channels) == (image_size, channels):
        return None
    return (f"is made for {net.cfg.image_size}x{net.cfg.image_size}x{net.cfg.channels} pictures, not this "
            f"tokenizer's {image_size}x{image_size}x{channels}")


class TokenizerObjective(nn.Module):
    """What a tokenizer's training step minimises; holds the tokenizer and, with an adversarial term, its critic
    (both trained by one optimizer: the critic's parameters take no gradient from the tokenizer's term, the
    tokenizer none from the critic's). The feature net is frozen and not a parameter of this module."""

    def __init__(self, tokenizer: nn.Module, cfg: ObjectiveConfig, feature_net: Classifier | None = None):
        super().__init__()
        self.tokenizer, self.cfg = tokenizer, cfg
        if cfg.adversarial_weight > 0 and tokenizer.cfg.image_size < 16:
            raise ValueError(f"the adversarial loss's patch critic needs pictures of 16 px or more, not "
                             f"{tokenizer.cfg.image_size}")
        self.critic = PatchCritic(tokenizer.cfg.channels) if cfg.adversarial_weight > 0 else None
        if cfg.feature_weight > 0 and feature_net is None:
            raise ValueError("a feature distance needs a feature net")
        if cfg.feature_weight > 0 and (why := feature_net_mismatch(feature_net, tokenizer.cfg.image_size,
                                                                  tokenizer.cfg.channels)):
            raise ValueError(f"the feature net {why}")
        self._features = [FeatureDistance(feature_net)] if cfg.feature_weight > 0 else []  # not a submodule

    def to(self, *args, **kwargs):
        for f in self._features:
            f.to(*args, **kwargs)
        return super().to(*args, **kwargs)

    def forward(self, x: torch.Tensor, step: int, net: nn.Module | None = None) -> tuple[torch.Tensor, dict]:
        """(loss, stats) of a batch x at a training step; `net`: the tokenizer to call (its DDP wrapper)."""
        recon, q = (net or self.tokenizer)(x)
        recon = recon.float()
        mse = F.mse_loss(recon, x)
        rec = mse  # what the adversarial term is balanced against: MSE and the feature distance, as in VQGAN
        stats = {"mse": mse.item(), "usage": q.usage, "perplexity": q.perplexity}
        if self._features:
            feat = self._features[0](x, recon)
            rec = rec + self.cfg.feature_weight * feat
            stats["feature"] = feat.item()
        loss = rec + q.loss
        if self.critic is not None and step >= self.cfg.adversarial_start:
            self.critic.requires_grad_(False)  # the tokenizer's term trains the tokenizer only
            g_loss = -self.critic(recon).mean()
            self.critic.requires_grad_(True)
            if torch.is_grad_enabled():
                loss = loss + self.adaptive_weight(rec, g_loss) * g_loss
            stats["loss"] = loss.item()  # the tokenizer's loss is what the run logs, not the critic's beside it
            d_loss = hinge_critic_loss(self.critic(x), self.critic(recon.detach()))
            loss = loss + d_loss
            stats.update(adversarial=g_loss.item(), critic=d_loss.item())
        return loss, stats

    def adaptive_weight(self, rec_loss: torch.Tensor, g_loss: torch.Tensor) -> torch.Tensor:
        """VQGAN's balance: adversarial_weight * |grad rec| / |grad adv| at the decoder's output layer."""
        layer = self.tokenizer.output_layer.weight
        g_rec = torch.autograd.grad(rec_loss, layer, retain_graph=True)[0]
        g_adv = torch.autograd.grad(g_loss, layer, retain_graph=True)[0]
        ratio = g_rec.norm() / (g_adv.norm() + 1e-4)
        return self.cfg.adversarial_weight * ratio.clamp(0, 1e4).detach()
