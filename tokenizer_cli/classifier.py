"""A small CNN classifier whose penultimate layer is the feature space of our Fréchet distance (FD).

No Inception weights are available offline, so FD is measured in the features of this net, trained
by `scripts/train_classifier.py` on Fashion-MNIST and shipped in weights/fd-fmnist-classifier/.
A feature-net folder holds classifier.json (the config, its test accuracy, and the real-vs-real FD
floor), classifier.safetensors, and README.md. The config is not called config.json so that the
folder is never taken for an mvq model folder (`hub.shipped_models` lists folders with config.json).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from .data import InputError
from .files import atomic_write, read_small_json
from .hub import CONFIG_MAX_BYTES, BadCheckpoint, ModelNotFound, load_weights, shipped_root
from .models.cpu_pieces import in_cpu_pieces

DEFAULT_FEATURE_NET = "fd-fmnist-classifier"
CONFIG_FILE = "classifier.json"
WEIGHTS_FILE = "classifier.safetensors"


@dataclass
class ClassifierConfig:
    image_size: int = 28  # H = W of the input images, in [-1, 1]
    channels: int = 1  # 1 (grey) or 3 (RGB)
    num_classes: int = 10  # Fashion-MNIST classes
    width: int = 32  # channels of the first conv; then 2x, 4x; the feature size is 4 * width


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Classifier(nn.Module):
    """conv w -> pool -> conv 2w -> pool -> conv 4w -> conv 4w -> 3x3 mean pool -> linear 4w (features) -> logits.

    Pooling right after the first conv makes it ~3x cheaper than pooling after the second, so a single
    CPU thread trains it in minutes; the 3x3 pool keeps the coarse layout (sleeves, soles) that a global
    mean would lose.
    """

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.body = nn.Sequential(
            conv_bn(cfg.channels, w), nn.MaxPool2d(2),  # (B, w, H/2, W/2)
            conv_bn(w, 2 * w), nn.MaxPool2d(2),  # (B, 2w, H/4, W/4)
            conv_bn(2 * w, 4 * w), conv_bn(4 * w, 4 * w),  # (B, 4w, H/4, W/4)
            nn.AdaptiveAvgPool2d(3), nn.Flatten(),  # (B, 4w * 9)
        )
        self.embed = nn.Linear(4 * w * 9, 4 * w)
        self.head = nn.Linear(4 * w, cfg.num_classes)

    @property
    def feature_size(self) -> int:
        return self.embed.out_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, F) penultimate activations (after ReLU), the FD feature space."""
        def run(part: torch.Tensor) -> torch.Tensor:
            return F.relu(self.embed(self.body(part)))

        if self.training:  # batch norm takes the batch's statistics: never split it
            return run(x)
        return in_cpu_pieces(run, x, x.shape[-1] * x.shape[-2])  # (B, F)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes)


def save_classifier(folder: str | Path, net: Classifier, info: dict | None = None, readme: str | None = None) -> Path:
    """Write classifier.json (config + `info`: accuracy, command...), classifier.safetensors and README.md."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write(folder / WEIGHTS_FILE, lambda p: save_file(state, p))
    cfg = {"config": dataclasses.asdict(net.cfg), **(info or {})}
    atomic_write(folder / CONFIG_FILE, lambda p: Path(p).write_text(json.dumps(cfg, indent=2) + "\n"))
    if readme is not None:
        atomic_write(folder / "README.md", lambda p: Path(p).write_text(readme))
    return folder


def resolve_feature_net(name: str) -> Path:
    """Folder of a feature net: a local folder path, or the name of one shipped in weights/."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise BadCheckpoint(f"{path}: no {CONFIG_FILE} (not a feature-net folder)")
        return path
    shipped = shipped_root() / name
    if (shipped / CONFIG_FILE).is_file():
        return shipped
    root = shipped_root()
    names = sorted(p.name for p in root.iterdir() if (p / CONFIG_FILE).is_file()) if root.is_dir() else []
    raise ModelNotFound(f"feature net {name!r} is neither a folder with {CONFIG_FILE} nor a shipped feature net "
                        f"({', '.join(names) or 'none shipped'}; scripts/train_classifier.py trains one)")


def feature_net_for(image_size: int, channels: int) -> str:
    """The shipped feature net made for images of this shape, the one measured on the most test images where
    several are (the broadest data: the picture set's before the clip-art one); the Fashion-MNIST one when
    none is."""
    root = shipped_root()
    fits = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if (folder / CONFIG_FILE).is_file():
            info = read_feature_net_info(folder)
            if (info["config"].get("image_size"), info["config"].get("channels")) == (image_size, channels):
                fits.append((-int(info.get("test_images") or 0), folder.name))
    return min(fits)[1] if fits else DEFAULT_FEATURE_NET


def read_feature_net_info(folder: Path) -> dict:
    try:
        info = read_small_json(folder / CONFIG_FILE, CONFIG_MAX_BYTES)
    except InputError as err:  # not JSON, not UTF-8, nested too deeply, too large, not a regular file
        raise BadCheckpoint(str(err)) from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise BadCheckpoint(f"{folder / CONFIG_FILE} has no 'config' section")
    return info


def load_feature_net(name_or_folder: str | Path, device: torch.device | str = "cpu") -> tuple[Classifier, dict]:
    """(classifier in eval mode on `device`, the whole classifier.json) for a folder or a shipped name."""
    folder = resolve_feature_net(str(name_or_folder))
    info = read_feature_net_info(folder)
    try:
        net = Classifier(ClassifierConfig(**info["config"]))
    except TypeError as err:
        raise BadCheckpoint(f"{folder / CONFIG_FILE}: bad classifier config ({err})")
    load_weights(net, folder / WEIGHTS_FILE, CONFIG_FILE)
    info["folder"] = str(folder)
    return net.to(device).eval(), info
