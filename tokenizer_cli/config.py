"""Configuration dataclasses: everything needed to rebuild a tokenizer or a prior.

They round-trip through plain dicts (`to_dict` / `from_dict`) so a model folder's config.json can be
read without unpickling anything. Every field is type- and range-checked when a config is built, so a
bad config.json fails with one line naming the field, before anything is allocated; unknown keys are
ignored with a warning, so folders written by a newer version still load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

FORMAT_VERSION = 3  # of config.json; 2: one flat quantizer record held every kind's fields; 1: "mvq" meant
# joint tokens and K was "codebook_size"
DEFAULT_KIND = "mvq"  # of a quantizer (the kinds: QUANTIZER_KINDS, below their records)
MASKED_KINDS = ("mvq", "mvq-joint")  # the two readings of Masked VQ
LAYOUTS = ("1d", "grid")
BACKBONES = ("conv", "vit")
MVQ_WINNERS = ("all", "code")
HYPOTHESIS_FORMS = ("residual", "mhd")
MASK_SCOPES = ("token", "image")
MASK_GRADIENTS = ("winner", "straight-through")
DEFAULT_SUBSET_RATIO = {"mvq": 0.5, "mvq-joint": 1.0}  # MH-Dropout's reference ratio; joint tokens: measured best


class ConfigError(ValueError):
    """A config value out of its type or range (one readable line naming the field)."""


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _check_float(name: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > hi or value < lo or (lo_open and value == lo):
        raise ConfigError(f"{name} must be a number in {'(' if lo_open else '['}{lo}, {hi}], got {value!r}")
    return float(value)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


class _ByKind(type):
    """`QuantizerConfig(kind=..., **fields)` builds that kind's record (VQConfig, FSQConfig, MVQConfig,
    JointMVQConfig) from the fields it has; other kinds' fields are ignored, as they were when one flat record
    held them all. The kinds' classes are called directly as any dataclass."""

    def __call__(cls, *args, **kwargs):
        if cls is QuantizerConfig:
            if args:
                raise TypeError("QuantizerConfig takes keyword arguments (kind=..., and the kind's fields)")
            kind = _check_choice("quantizer kind", kwargs.pop("kind", DEFAULT_KIND), QUANTIZER_KINDS)
            cls = QUANTIZER_CONFIGS[kind]
            unknown = sorted(set(kwargs) - set(FORMAT2_DEFAULTS) - {"format2_fields"})
            if unknown:
                raise TypeError(f"QuantizerConfig got unexpected keyword arguments {', '.join(unknown)}")
            own = {f.name for f in dataclasses.fields(cls)}
            kwargs = {k: v for k, v in kwargs.items() if k in own}
        return super().__call__(*args, **kwargs)


@dataclass
class QuantizerConfig(metaclass=_ByKind):
    """A quantizer's config (config.json "tokenizer"."quantizer"): "kind" and the fields of that kind alone.

    Call it as `QuantizerConfig(kind="fsq", levels=[8, 6, 5])` (see _ByKind) or as a kind's class."""

    kind: ClassVar[str]
    # Fields of other kinds with values away from their format-2 defaults, as a format-2 config.json (one flat
    # record for every kind) held them: never used, kept only so that the tokenizer's digest and config hash,
    # which token files record, stay what they were (see format2_dict).
    format2_fields: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.format2_fields, dict):
            raise ConfigError(f"quantizer format2_fields must be a JSON object, got {self.format2_fields!r}")

    @property
    def vocab_size(self) -> int:
        """Token vocabulary: the number of distinct ids one token can take (and the prior's vocabulary)."""
        raise NotImplementedError

    @property
    def has_masks(self) -> bool:
        """True where every token carries a mask beside it (MVQ with sampled masks)."""
        return False

    def describe(self) -> str:
        """One line for tables and model cards, naming the reading of MVQ."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        kept = d.pop("format2_fields")
        return {"kind": self.kind, **d, **({"format2_fields": kept} if kept else {})}

    def format2_dict(self) -> dict:
        """This record as format 2 wrote it (every kind's fields in one flat record): what the tokenizer's digest
        and the config hash are computed from, so that models made before per-kind records keep theirs."""
        own = self.to_dict()
        own.pop("format2_fields", None)
        return {**FORMAT2_DEFAULTS, **self.format2_fields, "dim": self.dim, **own}

    @classmethod
    def from_dict(cls, d: Any, where: str = "quantizer") -> QuantizerConfig:
        """A kind's record from its config.json object (unknown keys ignored with a warning)."""
        if not isinstance(d, dict):
            raise ConfigError(f"{where} must be a JSON object, got {type(d).__name__}")
        kind = _check_choice("quantizer kind", d.get("kind", DEFAULT_KIND), QUANTIZER_KINDS)
        return _from_dict(QUANTIZER_CONFIGS[kind], {k: v for k, v in d.items() if k != "kind"}, where)


@dataclass
class _CodebookConfig(QuantizerConfig):
    """What the quantizers with a learned codebook of K vectors share (VQ and both readings of MVQ)."""

    dim: int = 16  # D: size of one latent token
    num_codes: int = 16  # K: code vectors
    beta: float = 0.25  # commitment loss weight (VQ-VAE)
    dead_threshold: float = 0.03  # restart a code whose EMA usage falls below this share of a fair share

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("dim", self.dim, 1, 1024)
        _check_int("num_codes", self.num_codes, 1, 65536)
        _check_float("beta", self.beta, 0.0, 100.0)
        _check_float("dead_threshold", self.dead_threshold, 0.0, 1.0)


@dataclass
class VQConfig(_CodebookConfig):
    """VQ-VAE (quantizers/vq.py): the nearest of K code vectors, the codebook updated by EMA."""

    kind: ClassVar[str] = "vq"
    decay: float = 0.99  # EMA decay of the codebook

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float("decay", self.decay, 0.0, 1.0)

    @property
    def vocab_size(self) -> int:
        return self.num_codes

    def describe(self) -> str:
        return f"VQ K={self.num_codes}"


@dataclass
class FSQConfig(QuantizerConfig):
    """Finite scalar quantization (quantizers/fsq.py): each of len(levels) dims rounded to its levels."""

    kind: ClassVar[str] = "fsq"
    levels: list[int] = field(default_factory=lambda: [8, 6, 5])  # levels per dim

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.levels, (list, tuple)) or not 1 <= len(self.levels) <= 16:
            raise ConfigError(f"fsq levels must be a list of 1 to 16 integers, got {self.levels!r}")
        self.levels = [_check_int("fsq level", x, 2, 256) for x in self.levels]
        if math.prod(self.levels) > 2**20:
            raise ConfigError(f"fsq levels {self.levels} give a vocabulary over 2^20")

    @property
    def dim(self) -> int:
        """D: one dim per level."""
        return len(self.levels)

    @property
    def vocab_size(self) -> int:
        return math.prod(self.levels)

    def describe(self) -> str:
        return f"FSQ {'x'.join(map(str, self.levels))}"


@dataclass
class _MaskedConfig(_CodebookConfig):
    """What both readings of Masked VQ share: K code vectors, M binary masks of g bits, and the small network
    making a hypothesis of each (code, mask) pair (quantizers/masks.py)."""

    mask_bits: int = 4  # g, length of a binary mask configuration
    num_masks: int = 0  # M masks kept (0 = all 2^g - 1)
    mask_hidden: int = 64  # width of the small pre/var/out MLPs
    subset_ratio: float | None = None  # share of masks a latent may use per training step (None: kind default)
    hypothesis_form: str = "residual"  # h = c_k + out(...) | "mhd": h = out(mu + var(m * sigma))

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("mask_bits", self.mask_bits, 1, 10)
        _check_int("num_masks", self.num_masks, 0, 2**self.mask_bits - 1)
        _check_int("mask_hidden", self.mask_hidden, 1, 4096)
        _check_choice("hypothesis_form", self.hypothesis_form, HYPOTHESIS_FORMS)
        if self.num_masks == 0:
            self.num_masks = 2**self.mask_bits - 1
        if self.subset_ratio is None:
            self.subset_ratio = DEFAULT_SUBSET_RATIO[self.kind]
        self.subset_ratio = _check_float("subset_ratio", self.subset_ratio, 0.0, 1.0, lo_open=True)
        if self.num_codes * self.num_masks > 2**20:
            raise ConfigError(f"num_codes x num_masks = {self.num_codes * self.num_masks} hypotheses is over 2^20")

    def _masks(self) -> str:
        return f"g={self.mask_bits}" if self.num_masks == 2**self.mask_bits - 1 else f"M={self.num_masks}"


@dataclass
class MVQConfig(_MaskedConfig):
    """Masked VQ with sampled masks (quantizers/mvq.py): the token is the code id, the mask stored beside it."""

    kind: ClassVar[str] = "mvq"
    mask_scope: str = "token"  # a mask per token | "image": one mask per image for all its tokens
    mask_gradient: str = "winner"  # decoder gradient reaches the winning hypothesis | "straight-through"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("mask_scope", self.mask_scope, MASK_SCOPES)
        _check_choice("mask_gradient", self.mask_gradient, MASK_GRADIENTS)

    @property
    def vocab_size(self) -> int:
        return self.num_codes

    @property
    def has_masks(self) -> bool:
        return True

    def describe(self) -> str:
        return f"MVQ sampled masks K={self.num_codes}, {self._masks()}"


@dataclass
class JointMVQConfig(_MaskedConfig):
    """Masked VQ with joint tokens (quantizers/mvq_joint.py): the token is code id x mask."""

    kind: ClassVar[str] = "mvq-joint"
    winner: str = "all"  # training: nearest of all (k, m) in the subset | "code": nearest c_k first

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("winner", self.winner, MVQ_WINNERS)

    @property
    def vocab_size(self) -> int:
        return self.num_codes * self.num_masks

    def describe(self) -> str:
        return f"MVQ joint tokens K={self.num_codes}, {self._masks()} (vocabulary {self.vocab_size})"


QUANTIZER_CONFIGS: dict[str, type[QuantizerConfig]] = {
    c.kind: c for c in (VQConfig, FSQConfig, MVQConfig, JointMVQConfig)}
QUANTIZER_KINDS = tuple(QUANTIZER_CONFIGS)
# Format 2's one flat quantizer record: every kind's fields at their defaults (FSQ's dim was len(levels)).
FORMAT2_DEFAULTS = {"dim": 16, "num_codes": 16, "levels": [8, 6, 5], "mask_bits": 4, "num_masks": 0, "mask_hidden": 64,
                    "subset_ratio": None, "winner": "all", "hypothesis_form": "residual", "mask_scope": "token",
                    "mask_gradient": "winner", "beta": 0.25, "decay": 0.99, "dead_threshold": 0.03}


def quantizer_from_format2(q: dict) -> dict:
    """A format-2 flat quantizer record (every kind's fields) -> its kind's record: other kinds' fields go,
    except those whose values the record's format2_dict would not give back (kept in format2_fields)."""
    kind = q.get("kind", DEFAULT_KIND)
    if kind not in QUANTIZER_CONFIGS:
        return q  # QuantizerConfig.from_dict says what is wrong
    own = {f.name for f in dataclasses.fields(QUANTIZER_CONFIGS[kind])} | {"kind"}
    record = {k: v for k, v in q.items() if k in own or k not in FORMAT2_DEFAULTS}
    flat = QuantizerConfig.from_dict({k: v for k, v in q.items() if k in own}).format2_dict()
    kept = {k: v for k, v in q.items() if k not in own and k in FORMAT2_DEFAULTS
            and json.dumps(v, sort_keys=True) != json.dumps(flat[k], sort_keys=True)}
    return {**record, **({"format2_fields": kept} if kept else {})}


def grid_downsamples(image_size: int, tokens: int) -> int:
    """Stride-2 stages of a grid layout: its last feature map is the token grid, sqrt(T) cells a side, so T
    must be a square whose side divides image_size by a power of two."""
    side = math.isqrt(tokens)
    ratio = image_size // side if side else 0
    if side * side != tokens or side * ratio != image_size or ratio & (ratio - 1):
        raise ConfigError(f"grid layout needs tokens = side^2 with image_size / side a power of two; "
                          f"got tokens {tokens} for {image_size}x{image_size} images")
    return ratio.bit_length() - 1


@dataclass
class TokenizerConfig:
    image_size: int = 28  # H = W of the images the model reads and writes
    channels: int = 1  # 1 (grey) or 3 (RGB)
    tokens: int = 2  # T: tokens per image (grid layout: h*w of the last feature map)
    layout: str = "1d"  # 1d: flatten -> linear -> T x D; grid: feature map cells are tokens
    base_channels: int = 32  # width of the first conv stage; doubled at each downsample
    res_blocks: int = 1  # residual blocks per resolution
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    backbone: str = "conv"  # conv (residual conv net) | vit (Transformer over patches, TiTok-style for 1d)
    patch_size: int = 8  # vit: side of one patch (image_size must be a multiple)
    vit_width: int = 256  # vit: model width
    vit_layers: int = 4  # vit: blocks in the encoder and again in the decoder
    vit_heads: int = 4  # vit: attention heads

    # Written into config.json only when not at these defaults, so the configs (and the hashes token files
    # record) of models made before the field existed stay as they were.
    _LATER_FIELDS = {"backbone": "conv", "patch_size": 8, "vit_width": 256, "vit_layers": 4, "vit_heads": 4}

    def __post_init__(self) -> None:
        if isinstance(self.quantizer, dict):
            self.quantizer = QuantizerConfig.from_dict(self.quantizer)
        _check_choice("layout", self.layout, LAYOUTS)
        _check_int("image_size", self.image_size, 8, 512)
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels!r}")
        _check_int("tokens", self.tokens, 1, 4096)
        _check_int("base_channels", self.base_channels, 1, 1024)
        _check_int("res_blocks", self.res_blocks, 0, 16)
        _check_choice("backbone", self.backbone, BACKBONES)
        _check_int("patch_size", self.patch_size, 1, 64)
        _check_int("vit_width", self.vit_width, 8, 8192)
        _check_int("vit_layers", self.vit_layers, 1, 64)
        _check_int("vit_heads", self.vit_heads, 1, 64)
        if self.backbone == "vit":
            if self.image_size % self.patch_size:
                raise ConfigError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
            if self.vit_width % self.vit_heads:
                raise ConfigError(f"vit_width {self.vit_width} must be a multiple of vit_heads {self.vit_heads}")
            patches = (self.image_size // self.patch_size) ** 2
            if self.layout == "grid" and self.tokens != patches:
                raise ConfigError(f"a vit grid has one token per patch: {patches} for {self.image_size}x"
                                  f"{self.image_size} in {self.patch_size}-pixel patches, not {self.tokens}")
        if self.layout == "grid" and self.backbone == "conv":
            grid_downsamples(self.image_size, self.tokens)  # settings no network can have fail here, in one line

    def to_dict(self) -> dict:
        d = {**dataclasses.asdict(self), "quantizer": self.quantizer.to_dict()}
        if self.backbone == "conv":
            for key in self._LATER_FIELDS:
                d.pop(key)
        return d

    def hash_dict(self) -> dict:
        """What the tokenizer's digest and the config hash are computed from: to_dict with the quantizer's record
        as format 2 wrote it (QuantizerConfig.format2_dict), so the hashes of older models, and the token files
        recording them, stay valid."""
        return {**self.to_dict(), "quantizer": self.quantizer.format2_dict()}


@dataclass
class PriorConfig:
    """A Transformer prior over a tokenizer's tokens: the autoregressive prior's config (config.json "prior"),
    and the part every prior kind shares."""

    vocab_size: int = 240  # token ids 0..vocab_size-1 (the start token is added on top)
    tokens: int = 2  # sequence length T
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads
    n_embd: int = 128  # model width
    dropout: float = 0.0  # dropout in training (0 keeps small priors deterministic)
    num_classes: int = 0  # >0: class-conditional, the class replaces the start token
    num_masks: int = 0  # >0: MVQ with sampled masks: a mask head predicts each token's mask after its code

    def __post_init__(self) -> None:
        _check_int("prior num_masks", self.num_masks, 0, 1023)
        _check_int("prior vocab_size", self.vocab_size, 1, 2**20)
        _check_int("prior tokens", self.tokens, 1, 4096)
        _check_int("n_layer", self.n_layer, 1, 64)
        _check_int("n_head", self.n_head, 1, 64)
        _check_int("n_embd", self.n_embd, 1, 8192)
        _check_int("num_classes", self.num_classes, 0, 100_000)
        _check_float("dropout", self.dropout, 0.0, 1.0)
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd {self.n_embd} must be a multiple of n_head {self.n_head}")


MASKGIT_STEPS = 8  # default decoding passes (capped at T): MaskGIT's ImageNet setting
MASKGIT_CHOICE_TEMPERATURE = 4.5  # default scale of the Gumbel noise on the confidence, annealed (maskgit, 1d-tokenizer)


@dataclass
class MaskGITConfig(PriorConfig):
    """The MaskGIT prior (config.json "maskgit_prior"): a bidirectional Transformer of the same shape, the
    [MASK] id added on top of the vocabulary, and how it was taught to fill masked positions."""

    min_mask_ratio: float = 0.45  # each training sequence masks at least this share (the FSQ paper, A.4.2)
    label_smoothing: float = 0.1  # of the cross-entropy on masked positions (MaskGIT's)
    class_dropout: float = 0.1  # share of training labels replaced by "no class", for classifier-free guidance

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float("min_mask_ratio", self.min_mask_ratio, 0.0, 1.0, lo_open=True)
        _check_float("label_smoothing", self.label_smoothing, 0.0, 1.0)
        _check_float("class_dropout", self.class_dropout, 0.0, 1.0)


# ---------------------------------------------------------------- records: what was measured and how it was made

_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "list": (list,), "None": (type(None),)}


def _check_record(record: Any, where: str) -> None:
    """Each field of a record holds its annotated type (or None): a hand-edited config.json fails here. A
    non-finite number (a diverged run wrote NaN) becomes None with a warning: a record is informational and
    must not make the model unloadable."""
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        names = [name.strip() for name in str(f.type).split("|")]
        allowed = tuple(t for name in names for t in _TYPES.get(name, (object,)))
        if isinstance(value, float) and not math.isfinite(value):
            warnings.warn(f"{where}.{f.name} is {value!r}: read as unknown (None)", stacklevel=3)
            setattr(record, f.name, None)
        elif value is not None and (not isinstance(value, allowed) or isinstance(value, bool)):
            raise ConfigError(f"{where}.{f.name} must be {' or '.join(n for n in names if n != 'None')}, "
                              f"got {value!r}")


@dataclass
class TrainingRecord:
    """How a network of the folder was trained (config.json "training", "prior_training" and
    "maskgit_prior_training")."""

    command: str | None = None  # the mvq command line
    data: str | None = None  # what it was trained on
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    warmup: int | None = None
    weight_decay: float | None = None
    seed: int | None = None
    checkpoint_every: int | None = None
    precision: str | None = None  # fp32 | bf16
    seconds: float | None = None  # wall time of this run (since its last resume)
    device: str | None = None
    resumed_from: int | None = None  # step the run resumed from (0: from scratch)
    processes: int | None = None  # data-parallel processes
    final_loss: float | None = None  # prior only: nats per token at the last step
    adversarial_weight: float | None = None  # tokenizer: VQGAN's patch critic term (None: none)
    adversarial_start: int | None = None  # tokenizer: the step the critic started at
    feature_weight: float | None = None  # tokenizer: feature distance in a feature net (None: none)
    feature_net: str | None = None  # tokenizer: that feature net
    init_from: str | None = None  # tokenizer: the model whose weights it started from (fine-tuning)

    _WRITTEN_WHEN_SET = ("adversarial_weight", "adversarial_start", "feature_weight", "feature_net", "init_from")

    def to_dict(self) -> dict:
        """As written in config.json: the fields of later versions only where a run set them."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if v is not None or k not in self._WRITTEN_WHEN_SET}
    loss_history: list | None = None  # [step, loss] pairs, about 100 per run


@dataclass
class ReconstructionMetrics:
    """Reconstruction of held-out images, measured when the tokenizer was trained (config.json "metrics")."""

    images: int | None = None
    mse: float | None = None  # on [-1, 1] pixels
    psnr: float | None = None  # dB on [0, 1] pixels, of the mean squared error over the images
    codebook_usage: float | None = None  # share of the vocabulary used
    tokens_used: int | None = None
    perplexity: float | None = None
    eval_data: str | None = None  # a description of the images


@dataclass
class EvalResult:
    """What `mvq eval` measured (config.json "eval"): FD in a classifier's features, and reconstruction."""

    recon_fd: float | None = None
    generation_fd: float | None = None  # None: the model has no prior
    sampler: str | None = None  # what sampled for generation_fd: "AR prior", "MaskGIT prior, 8 steps"
    mse: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    codebook_usage: float | None = None
    tokens_used: int | None = None
    perplexity: float | None = None
    images: int | None = None
    eval_data: str | None = None
    fd_train_vs_test: float | None = None  # FD of as many real train images vs the test images: the floor
    feature_net: str | None = None
    feature_net_accuracy: float | None = None
    seed: int | None = None  # of the prior's sampling
    weights_sha256: str | None = None  # of the weights measured: a stale result is told apart
    device: str | None = None
    seconds: float | None = None
    command: str | None = None
    warning: str | None = None  # why these FDs say little (too few images)


@dataclass(frozen=True)
class PriorKind:
    """Where a prior kind lives in a model folder, and what the commands call it."""

    name: str  # `mvq train prior --kind`, `mvq sample --sampler`
    title: str  # in messages
    key: str  # its ModelConfig field and config.json section
    record: str  # the config.json record of its training
    file: str  # its weights
    checkpoints: str  # its training run's checkpoints (resumable), under the model folder


PRIOR_KINDS = {
    "ar": PriorKind("ar", "AR prior", "prior", "prior_training", "prior.safetensors", "checkpoints-prior"),
    "maskgit": PriorKind("maskgit", "MaskGIT prior", "maskgit_prior", "maskgit_prior_training",
                         "prior-maskgit.safetensors", "checkpoints-maskgit"),
}

RECORDS = ("training", "prior_training", "metrics", "eval", "maskgit_prior_training")  # ModelConfig's records


@dataclass
class ModelConfig:
    """A model folder's config.json, parsed once: the networks' configs and the records beside them."""

    tokenizer: TokenizerConfig
    prior: PriorConfig | None = None  # the autoregressive prior (prior.safetensors)
    training: TrainingRecord | None = None
    prior_training: TrainingRecord | None = None
    metrics: ReconstructionMetrics | None = None
    eval: EvalResult | None = None
    maskgit_prior: MaskGITConfig | None = None  # the MaskGIT prior (prior-maskgit.safetensors)
    maskgit_prior_training: TrainingRecord | None = None
    format_version: int = FORMAT_VERSION  # the format the file was written in (it is written in today's)
    other: dict = field(default_factory=dict)  # sections this mvq does not know (a user's, a newer mvq's): kept

    @classmethod
    def from_dict(cls, d: Any) -> ModelConfig:
        """Parse and check a whole config.json (any format version up to FORMAT_VERSION; older ones migrate)."""
        if not isinstance(d, dict) or not isinstance(d.get("tokenizer"), dict):
            raise ConfigError("config.json has no 'tokenizer' section (not an mvq model)")
        version = d.get("mvq_format", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigError(f"mvq_format must be a positive integer, got {version!r}")
        known = {"mvq_format"} | {f.name for f in dataclasses.fields(cls)} - {"format_version", "other"}
        other = {k: v for k, v in d.items() if k not in known}

        def section(cls_, key: str):  # absent, null or {}: no such section (as older folders wrote them)
            if d.get(key) in (None, {}):
                return None
            return _from_dict(cls_, d[key], key)

        cfg = cls(tokenizer=tokenizer_config_from_dict(d["tokenizer"], version),
                  prior=section(PriorConfig, "prior"), training=section(TrainingRecord, "training"),
                  prior_training=section(TrainingRecord, "prior_training"),
                  metrics=section(ReconstructionMetrics, "metrics"), eval=section(EvalResult, "eval"),
                  maskgit_prior=section(MaskGITConfig, "maskgit_prior"),
                  maskgit_prior_training=section(TrainingRecord, "maskgit_prior_training"),
                  format_version=version, other=other)
        cfg.check()
        return cfg

    @property
    def prior_kinds(self) -> list[str]:
        """The kinds of prior the folder holds ("ar", "maskgit"), in that order."""
        return [name for name, kind in PRIOR_KINDS.items() if getattr(self, kind.key) is not None]

    def check(self) -> None:
        """Every record holds its fields' types, and each prior models this tokenizer's tokens (and masks)."""
        for key in RECORDS:
            if getattr(self, key) is not None:
                _check_record(getattr(self, key), key)
        t = self.tokenizer
        for kind in PRIOR_KINDS.values():
            p, what = getattr(self, kind.key), f"the {kind.title}"
            if p is None:
                continue
            if p.vocab_size != t.quantizer.vocab_size or p.tokens != t.tokens:
                raise ConfigError(f"{what} models {p.tokens} tokens of a {p.vocab_size}-word vocabulary but the "
                                  f"tokenizer makes {t.tokens} tokens of {t.quantizer.vocab_size}")
            if p.num_masks and (not t.quantizer.has_masks or p.num_masks != t.quantizer.num_masks):
                raise ConfigError(f"{what} predicts {p.num_masks} masks but the tokenizer's tokens carry "
                                  + (f"{t.quantizer.num_masks}" if t.quantizer.has_masks else "none"))

    def check_rewritable(self) -> None:
        """A config.json written by a newer format is never rewritten (this mvq would drop what it does not know)."""
        if self.format_version > FORMAT_VERSION:
            raise ConfigError(f"config.json was written by a newer mvq (format {self.format_version}, this one "
                              f"writes {FORMAT_VERSION}): it is not rewritten, so nothing of it is lost")

    def to_dict(self) -> dict:
        """config.json as written (format FORMAT_VERSION); records absent are left out, a missing prior is null."""
        self.check_rewritable()
        d: dict[str, Any] = {**self.other, "mvq_format": FORMAT_VERSION, "tokenizer": to_dict(self.tokenizer),
                             "prior": to_dict(self.prior) if self.prior is not None else None}
        if self.maskgit_prior is not None:  # absent otherwise, as older folders are
            d["maskgit_prior"] = to_dict(self.maskgit_prior)
        for key in RECORDS:
            if getattr(self, key) is not None:
                d[key] = to_dict(getattr(self, key))
        return d

    @property
    def hash(self) -> str:
        """Short stable hash of the networks' configs (tokenizer and priors), stored in token manifests."""
        d = {"tokenizer": self.tokenizer.hash_dict(), "prior": to_dict(self.prior) if self.prior is not None else None}
        if self.maskgit_prior is not None:  # a folder without one keeps the hash it had
            d["maskgit_prior"] = to_dict(self.maskgit_prior)
        return config_hash(d)


def to_dict(cfg: Any) -> dict:
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dataclasses.asdict(cfg)


def _from_dict(cls, d: Any, where: str):
    """A dataclass from a dict; unknown keys are ignored with a warning (newer folders still load)."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        warnings.warn(f"{where}: ignoring unknown keys {', '.join(unknown)}", stacklevel=3)
    try:
        return cls(**{k: v for k, v in d.items() if k in names})
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None


def migrate_tokenizer_dict(d: dict, format_version: int) -> dict:
    """Bring a tokenizer section written by an older format up to FORMAT_VERSION (a copy)."""
    d = dict(d)
    q = dict(d.get("quantizer") or {})
    if format_version < 2:
        if "codebook_size" in q:
            q["num_codes"] = q.pop("codebook_size")
        if q.get("kind") == "mvq":  # format 1 had only joint tokens
            q["kind"] = "mvq-joint"
    if format_version < 3:
        q = quantizer_from_format2(q)
    d["quantizer"] = q
    return d


def tokenizer_config_from_dict(d: dict, format_version: int = FORMAT_VERSION) -> TokenizerConfig:
    if not isinstance(d, dict):
        raise ConfigError(f"tokenizer must be a JSON object, got {type(d).__name__}")
    if format_version > FORMAT_VERSION:
        warnings.warn(f"config.json format {format_version} is newer than this mvq ({FORMAT_VERSION})", stacklevel=2)
    return _from_dict(TokenizerConfig, migrate_tokenizer_dict(d, format_version), "tokenizer")


def config_hash(d: dict) -> str:
    """Short stable hash of a config dict, stored in token manifests."""
    blob = json.dumps(d, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
