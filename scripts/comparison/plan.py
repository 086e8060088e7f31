"""The plan of the comparison: the grid of tokenizer configurations (Spec), the MVQ ablations, and the pairs
compared (MVQ against VQ at the same K, and against VQ/FSQ at the same vocabulary)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tokenizer_cli.config import MASKED_KINDS

MASKED = MASKED_KINDS

FASHION = "fashion-mnist"


@dataclass(frozen=True)
class Spec:
    """One tokenizer configuration of the grid (a run is a Spec and a seed)."""

    name: str
    quantizer: str  # vq | fsq | mvq (sampled masks, token = code id) | mvq-joint (token = code id x mask)
    tokens: int
    layout: str = "1d"
    K: int | None = None  # code vectors (vq, mvq, mvq-joint)
    g: int | None = None  # mask bits (mvq, mvq-joint)
    levels: tuple[int, ...] | None = None  # fsq
    group: str = ""  # small | large | xl | more | long | ablation
    subset_ratio: float | None = None  # --subset-ratio (None: the CLI default of the kind)
    winner: str | None = None  # mvq-joint: --winner (None: the CLI default, all)
    scope: str | None = None  # mvq: --mask-scope (None: token)
    gradient: str | None = None  # mvq: --mask-gradient (None: winner)
    form: str | None = None  # mvq, mvq-joint: --hypothesis-form (None: residual)

    @property
    def vocab(self) -> int:
        if self.quantizer == "fsq":
            return math.prod(self.levels)
        if self.quantizer == "mvq-joint":
            return self.K * (2**self.g - 1)
        return self.K

    @property
    def options(self) -> list[str]:
        """The non-default MVQ options, for labels."""
        out = [] if self.subset_ratio is None else [f"ratio {self.subset_ratio:g}"]
        out += [f"winner {self.winner}"] if self.winner else []
        out += [f"{self.scope} masks"] if self.scope else []
        out += [self.gradient] if self.gradient else []
        out += [f"{self.form} form"] if self.form else []
        return out

    @property
    def short(self) -> str:
        """A short label for plots: K16g4, joint K16g4, K240, 8x6x5."""
        if self.quantizer == "fsq":
            return "x".join(map(str, self.levels))
        if self.quantizer in MASKED:
            extra = "".join(f" {o}" for o in self.options)
            return ("joint " if self.quantizer == "mvq-joint" else "") + f"K{self.K}g{self.g}{extra}"
        return f"K{self.K}"

    @property
    def describe(self) -> str:
        if self.quantizer == "fsq":
            return "FSQ " + "x".join(map(str, self.levels))
        if self.quantizer in MASKED:
            what = "MVQ joint" if self.quantizer == "mvq-joint" else "MVQ sampled"
            return f"{what} K={self.K}, g={self.g}" + "".join(f", {o}" for o in self.options)
        return f"VQ K={self.K}"

    def quantizer_args(self) -> list[str]:
        args = ["--quantizer", self.quantizer, "--tokens", str(self.tokens)]
        if self.layout != "1d":
            args += ["--layout", self.layout]
        if self.quantizer == "fsq":
            args += ["--levels", ",".join(map(str, self.levels))]
        else:
            args += ["--num-codes", str(self.K)]
        if self.quantizer in MASKED:
            args += ["--mask-bits", str(self.g)]
        for flag, value in (("--subset-ratio", self.subset_ratio), ("--winner", self.winner),
                            ("--mask-scope", self.scope), ("--mask-gradient", self.gradient),
                            ("--hypothesis-form", self.form)):
            if value is not None:
                args += [flag, str(value)]
        return args


FAIR_FSQ = {60: (5, 4, 3), 240: (8, 6, 5), 960: (8, 10, 12)}  # FSQ levels with the joint vocabulary K*15


def grid_tokens(image_size: int) -> int:
    """T of the grid-layout baseline: the largest side <= 8 with image_size / side a power of two >= 4."""
    side = image_size >> 2
    while side > 8 and side % 2 == 0:
        side //= 2
    return side * side


def grid(image_size: int = 28) -> list[Spec]:
    """The paper's axis (MVQ with sampled masks, MVQ with joint tokens and VQ at the same K) and the fair axis
    (VQ and FSQ with the joint vocabulary K*15), for K in {4, 16, 64} at T in {2, 5}; MVQ at more tokens;
    the long-sequence VQ baselines."""
    specs = []
    for t in (2, 5):
        for k, group in ((4, "small"), (16, "large"), (64, "xl")):
            specs += [
                Spec(f"mvq-k{k}g4-t{t}", "mvq", t, K=k, g=4, group=group),
                Spec(f"mvqj-k{k}g4-t{t}", "mvq-joint", t, K=k, g=4, group=group),
                Spec(f"vq-k{k}-t{t}", "vq", t, K=k, group=group),
                Spec(f"vq-k{k * 15}-t{t}", "vq", t, K=k * 15, group=group),
                Spec(f"fsq-{'x'.join(map(str, FAIR_FSQ[k * 15]))}-t{t}", "fsq", t, levels=FAIR_FSQ[k * 15], group=group),
            ]
    specs += [Spec(f"mvq-k16g4-t{t}", "mvq", t, K=16, g=4, group="more") for t in (8, 16)]
    gt = grid_tokens(image_size)
    specs += [Spec("vq-k16-t16", "vq", 16, K=16, group="long"),
              Spec(f"vq-k16-grid{gt}", "vq", gt, layout="grid", K=16, group="long")]
    return specs


def ablations() -> list[Spec]:
    """MVQ variants at K=16 (run only when named in --only). Sampled masks: more mask bits (g=6, 8: 63 and 255
    masks, the lever of the author's code, whose VQ autoencoder draws 256 hypotheses per code), one mask per image, the
    straight-through cut instead of the decoder's gradient into the winner, MH-Dropout's hypothesis form,
    subset ratios 1.0 and 0.75. Joint tokens: subset ratio 0.5 / 0.25, winner 'code', fewer masks."""
    return [Spec(f"mvq-k16g{g}-t2", "mvq", 2, K=16, g=g, group="ablation") for g in (6, 8)] + [
            Spec("mvq-k16g4-image-t2", "mvq", 2, K=16, g=4, group="ablation", scope="image"),
            Spec("mvq-k16g4-image-t5", "mvq", 5, K=16, g=4, group="ablation", scope="image"),
            Spec("mvq-k16g4-st-t2", "mvq", 2, K=16, g=4, group="ablation", gradient="straight-through"),
            Spec("mvq-k16g4-mhd-t2", "mvq", 2, K=16, g=4, group="ablation", form="mhd"),
            Spec("mvq-k16g4-r1-t2", "mvq", 2, K=16, g=4, group="ablation", subset_ratio=1.0),
            Spec("mvq-k16g4-r075-t2", "mvq", 2, K=16, g=4, group="ablation", subset_ratio=0.75)] + \
        [Spec(f"mvqj-k16g4-r05-t{t}", "mvq-joint", t, K=16, g=4, group="ablation", subset_ratio=0.5) for t in (2, 5)] + [
        Spec("mvqj-k16g4-r025-t2", "mvq-joint", 2, K=16, g=4, group="ablation", subset_ratio=0.25),
        Spec("mvqj-k16g4-wcode-t2", "mvq-joint", 2, K=16, g=4, group="ablation", winner="code"),
        Spec("mvqj-k4g6-t2", "mvq-joint", 2, K=4, g=6, group="ablation"),
        Spec("mvqj-k16g2-t2", "mvq-joint", 2, K=16, g=2, group="ablation")]


def comparisons(specs: list[Spec]) -> list[tuple[str, Spec, Spec]]:
    """(axis, MVQ spec, baseline spec): 'same K' (the paper's axis) and 'same vocabulary' (the fair one)."""
    out = []
    for m in (s for s in specs if s.quantizer in MASKED):
        for b in specs:
            if b.tokens != m.tokens or b.layout != m.layout or b.quantizer in MASKED:
                continue
            if b.quantizer == "vq" and b.K == m.K:
                out.append(("same K", m, b))
            elif b.vocab == m.vocab:
                out.append(("same vocabulary", m, b))
    return out
