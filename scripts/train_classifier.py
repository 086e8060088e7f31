"""Train an FD feature net: a small CNN classifier, on Fashion-MNIST or on a prepared colour image folder.

Usage:
    python scripts/train_classifier.py [--out weights/fd-fmnist-classifier] [--epochs 6] [--threads 1]
    python scripts/train_classifier.py --data data/openclipart64 --out weights/fd-clipart-classifier \
        --width 16 --epochs 20 --flip
Fashion-MNIST needs `apt-get install dataset-fashion-mnist` (about 8 minutes on one CPU thread). A folder
is one written by scripts/prepare_openclipart.py: train/, test/ and manifest.json, whose recorded source
paths give the class of every image (their first folder: animals, buildings, food, ...).
Light augmentation (random shifts of up to 2 px; flips with --flip), AdamW with a one-cycle schedule.
Writes classifier.json with the measured test accuracy and the FD of real train vs real test images
(as many train images as test images: the floor any generated set of that size is compared against),
classifier.safetensors and README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tokenizer_cli.classifier import Classifier, ClassifierConfig, save_classifier
from tokenizer_cli.data import ImageSource, load_fashion_mnist, load_uint8
from tokenizer_cli.fd import extract_features, features_fd
from tokenizer_cli.images import to_float

FASHION = "fashion-mnist"


def load_folder(root: Path, split: str, size: int, channels: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 images, int64 labels, class names) of ROOT/split, labelled by manifest.json's source paths."""
    outputs = json.loads((root / "manifest.json").read_text())["outputs"]
    names = sorted(k for k in outputs if k.startswith(split + "/"))
    classes = sorted({v.split("/")[0] for v in outputs.values()})
    images = load_uint8([ImageSource(str(root / k)) for k in names], size, channels)  # (N, H, W, C) uint8
    labels = np.array([classes.index(outputs[k].split("/")[0]) for k in names], dtype=np.int64)
    return images, labels, classes


def load_packed(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 images, int64 labels, class names) of a picture set from scripts/prepare_pictures.py:
    ROOT/split/images.npy and labels.npy, the class names being manifest.json's groups."""
    classes = json.loads((root / "manifest.json").read_text())["groups"]
    images = np.load(root / split / "images.npy")
    labels = np.load(root / split / "labels.npy").astype(np.int64)
    return images, labels, classes


def augment(x: torch.Tensor, g: torch.Generator, shift: int = 2, flip: bool = False, fill: float = -1.0) -> torch.Tensor:
    """(B, C, H, W): random shifts of up to `shift` px (the border filled with `fill`), optionally flips."""
    b, _, h, w = x.shape
    padded = F.pad(x, (shift,) * 4, value=fill)  # (B, C, H+2s, W+2s)
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=g)
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=g)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
    out = padded.permute(0, 2, 3, 1)[torch.arange(b)[:, None, None], rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)
    if not flip:
        return out
    flipped = torch.rand(b, generator=g) < 0.5
    return torch.where(flipped[:, None, None, None], out.flip(-1), out)


@torch.inference_mode()
def accuracy(net: Classifier, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    net.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = net(to_float(images[start : start + batch_size]))
        correct += (logits.argmax(-1).numpy() == labels[start : start + batch_size]).sum()
    return correct / len(images)


def readme(name: str, info: dict) -> str:
    t, c = info["training"], info["config"]
    shape = f"{c['image_size']}x{c['image_size']} " + ("grey" if c["channels"] == 1 else "RGB")
    return "\n".join([
        f"# {name}",
        "",
        "A feature net of mvq's Fréchet distance (FD): no Inception weights are available offline, so",
        "`mvq eval` measures FD in the penultimate features (after ReLU) of this small CNN classifier,",
        f"trained on {t['data']} ({info['features']} features, inputs {shape} in [-1, 1];",
        f"{c['num_classes']} classes).",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test accuracy ({info['test_images']:,} images) | {info['test_accuracy']:.4f} |",
        f"| FD {info['fd_reference']} | {info['fd_train_vs_test']:.4f} |",
        "",
        "The train-vs-test FD is the floor: a generator whose samples were as good as real images would score about that.",
        "",
        "## Training",
        "",
        "```",
        t["command"],
        "```",
        "",
        *(f"- {k}: {v}" for k, v in t.items() if k != "command"),
        "",
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=FASHION, help="fashion-mnist, or a folder from scripts/prepare_openclipart.py "
                   "or scripts/prepare_pictures.py (its groups are the classes)")
    p.add_argument("--image-size", type=int, default=64, help="image side for a folder (fashion-mnist is 28)")
    p.add_argument("--out", type=Path, default=Path("weights/fd-fmnist-classifier"))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--shift", type=int, default=2, help="random shifts of up to this many pixels")
    p.add_argument("--flip", action="store_true", help="also random horizontal flips (test images are never flipped)")
    p.add_argument("--balance", action="store_true", help="draw every class equally often (folder data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: leave the other cores alone)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)

    if a.data == FASHION:
        (train_x, train_y), (test_x, test_y) = load_fashion_mnist(split="train"), load_fashion_mnist(split="test")
        classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
        cfg, fill = ClassifierConfig(width=a.width), -1.0  # black background
        described = f"Fashion-MNIST train ({len(train_x):,} images)"
    else:
        root = Path(a.data)
        load = load_packed if (root / "train" / "images.npy").is_file() else functools.partial(
            load_folder, size=a.image_size, channels=3)
        train_x, train_y, classes = load(root, "train")
        test_x, test_y, _ = load(root, "test")
        cfg, fill = ClassifierConfig(image_size=a.image_size, channels=3, num_classes=len(classes), width=a.width), 1.0
        described = f"{root.name}/train ({len(train_x):,} images, classes from manifest.json)"
        if a.balance:  # draw each class equally often: a rare group (paintings) must still be told apart
            counts = np.bincount(train_y, minlength=len(classes))
            weights = torch.from_numpy(1.0 / counts[train_y])
    net = Classifier(cfg).to(memory_format=torch.channels_last)
    steps_per_epoch = len(train_x) // a.batch_size  # the last partial batch is dropped
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.epochs * steps_per_epoch)
    labels = torch.from_numpy(train_y)
    t0 = time.perf_counter()
    for epoch in range(a.epochs):
        net.train()
        order = (torch.multinomial(weights, len(train_x), replacement=True, generator=g) if a.balance and
                 a.data != FASHION else torch.randperm(len(train_x), generator=g))
        total = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * a.batch_size : (i + 1) * a.batch_size]
            x = augment(to_float(train_x[idx.numpy()]), g, a.shift, a.flip, fill)
            x = x.contiguous(memory_format=torch.channels_last)  # ~15% faster convolutions on CPU
            loss = F.cross_entropy(net(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        acc = accuracy(net, test_x, test_y)
        print(f"epoch {epoch + 1}/{a.epochs}: loss {total / steps_per_epoch:.4f}, test accuracy {acc:.4f}, "
              f"{time.perf_counter() - t0:.0f}s", flush=True)
    seconds = time.perf_counter() - t0

    test_acc = accuracy(net, test_x, test_y)
    n_ref = len(test_x)  # FD is biased by the sample size: the floor uses as many images as an eval does
    rows = np.linspace(0, len(train_x) - 1, n_ref).round().astype(int)  # spread: a packed set is in source order
    fd_ref = features_fd(extract_features(net, train_x[rows]), extract_features(net, test_x))
    info = {
        "test_accuracy": round(float(test_acc), 4),
        "test_images": len(test_x),
        "fd_train_vs_test": round(fd_ref, 4),
        "fd_reference": f"real train ({n_ref:,} spread over the set) vs real test ({len(test_x):,} images)",
        "features": net.feature_size,
        "classes": classes,
        "training": {
            "command": "python " + shlex.join(sys.argv),
            "data": f"{described}, shifts of up to {a.shift} px" + (" and horizontal flips" if a.flip else ""),
            "epochs": a.epochs, "batch_size": a.batch_size, "optimizer": "AdamW, one-cycle", "lr": a.lr,
            "weight_decay": a.weight_decay, "seed": a.seed, "threads": a.threads, "seconds": round(seconds, 1),
        },
    }
    info["config"] = dataclasses.asdict(cfg)
    save_classifier(a.out, net, info, readme(a.out.name, info))
    print(f"wrote {a.out}: test accuracy {test_acc:.4f}, FD train vs test {fd_ref:.4f}, {seconds:.0f}s")


if __name__ == "__main__":
    main()
