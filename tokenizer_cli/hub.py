"""Model folders in the Hugging Face Hub layout, and resolving `--model`.

A model folder holds config.json, tokenizer.safetensors, optionally prior.safetensors (the
autoregressive prior) and prior-maskgit.safetensors (the MaskGIT prior), and README.md (the model
card). `--model` is tried, in order, as a local folder, the name of a default shipped in weights/,
and a Hub repo id (owner/name[@revision]) that huggingface_hub resolves through its cache
(honouring HF_HUB_OFFLINE and HF_TOKEN).
Nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from safetensors import SafetensorError

from .cards import model_card
from .config import PRIOR_KINDS, ConfigError, ModelConfig, TokenizerConfig
from .data import InputError
from .files import atomic_write, current_umask, read_small_json

if TYPE_CHECKING:  # torch and the models are imported where used, so `mvq --help` starts without torch
    import torch

    from .models import Tokenizer

DEFAULT_MODEL = "fsq-pictures-t64"  # the colour model that serves real pictures best (README "Shipped models")
CONFIG_MAX_BYTES = 1 << 20  # config.json: about 12 kB with a training history; a larger one is not ours
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


class ModelNotFound(Exception):
    """No local folder, shipped default or Hub repo matched (one readable line)."""


class BadCheckpoint(Exception):
    """A model folder exists but its files cannot be loaded."""


def weights_digest(folder: Path, sampler: str | None = None) -> str:
    """Short hash of the weight files an evaluation of a model folder depends on: the tokenizer and the prior that
    sampled (`sampler` "ar" or "maskgit"; by default the folder's default sampler: the AR prior where there is
    one), so that a stale "eval" (weights retrained since) can be told apart and a prior of the other kind
    trained beside them leaves it valid. For a folder with an AR prior it is the digest mvq always recorded."""
    if sampler is None:
        sampler = "ar" if (folder / PRIOR_KINDS["ar"].file).is_file() else "maskgit"
    h = hashlib.sha256()
    for name in ("tokenizer.safetensors", PRIOR_KINDS[sampler].file):
        if (folder / name).is_file():
            h.update((folder / name).read_bytes())
    return h.hexdigest()[:16]


def tokenizer_digest(tokenizer: Tokenizer) -> str:
    """A hash of a tokenizer's config and weights (as float32, so a float16 file and the model loaded from it
    agree): what token files record to name the tokenizer that wrote them."""
    return _digest(tokenizer.cfg, tokenizer.state_dict())


def _digest(cfg: TokenizerConfig, state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(json.dumps(cfg.hash_dict(), sort_keys=True).encode())
    for key, value in sorted(state.items()):
        h.update(key.encode())
        h.update(value.detach().float().cpu().numpy().tobytes())  # as loaded (float32)
    return h.hexdigest()[:16]


def _holds_tokenizer(folder: Path, cfg: ModelConfig, tokenizer: Tokenizer) -> bool:
    """Whether folder's tokenizer.safetensors (with config cfg) is this tokenizer."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(folder / "tokenizer.safetensors"))
    except Exception:  # missing or unreadable: not this tokenizer
        return False
    return _digest(cfg.tokenizer, state) == tokenizer_digest(tokenizer)


def shipped_root() -> Path:
    """weights/ of the repository (editable install) or the package data (wheel)."""
    return Path(str(resources.files("tokenizer_cli.weights")))


def is_shipped(folder: Path) -> bool:
    """Whether a folder is (inside) the shipped models: package data, never written into."""
    return folder.resolve().is_relative_to(shipped_root().resolve())


def shipped_models() -> list[str]:
    root = shipped_root()
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []


def shipped_configs() -> dict[str, ModelConfig]:
    """The config of every shipped model that reads (a broken one is left out, not fatal: this feeds advice)."""
    configs = {}
    for name in shipped_models():
        try:
            configs[name] = read_config(shipped_root() / name)
        except BadCheckpoint:
            continue
    return configs


def bounded_hub_session() -> None:
    """Give every request huggingface_hub makes a finite timeout, so a stalled network fails instead of hanging.

    huggingface_hub reads HF_HUB_ETAG_TIMEOUT (metadata) and HF_HUB_DOWNLOAD_TIMEOUT (file transfers), 10 s
    each by default, but several of its calls (`repo_info` in `snapshot_download`, most `HfApi` methods:
    `create_repo`, `upload_folder`, ...) pass no timeout, and its shared client has none. This adds one to
    that client (`huggingface_hub.get_session()`, the session every call goes through): connect within
    HF_HUB_ETAG_TIMEOUT, and no read, write or pool wait longer than the larger of the two, wherever a call
    left it unset. Calls that set their own timeout keep it.
    """
    from huggingface_hub import get_session

    session = get_session()
    hooks = getattr(session, "event_hooks", None)
    if not isinstance(hooks, dict) or any(h is _finite_timeouts for h in hooks.get("request", [])):
        return  # not an httpx-style client (older huggingface_hub), or already bounded
    session.event_hooks = {**hooks, "request": [*hooks.get("request", []), _finite_timeouts]}


def _hub_timeouts() -> tuple[float, float]:
    from huggingface_hub import constants

    etag = float(constants.HF_HUB_ETAG_TIMEOUT)
    return etag, max(etag, float(constants.HF_HUB_DOWNLOAD_TIMEOUT))


def _finite_timeouts(request) -> None:
    """httpx request hook: fill in the timeouts a call left unset (None: wait forever)."""
    connect, other = _hub_timeouts()
    wanted = {"connect": connect, "read": other, "write": other, "pool": other}
    current = request.extensions.get("timeout") or {}
    request.extensions["timeout"] = {k: current.get(k) if current.get(k) is not None else v for k, v in wanted.items()}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    if text.startswith("Got: "):  # huggingface_hub wraps the real cause as "Got: Type: message\n..."
        text = text[len("Got: "):]
    text = text.splitlines()[0] if text else ""
    return text if text.startswith(type(err).__name__) else f"{type(err).__name__}: {text}" if text else type(err).__name__


def _hub_download(repo: str) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    repo_id, _, revision = repo.partition("@")
    bounded_hub_session()
    try:
        path = snapshot_download(repo_id, revision=revision or None,
                                 allow_patterns=["config.json", "*.safetensors", "README.md"])
    except LocalEntryNotFoundError as err:
        if constants.HF_HUB_OFFLINE:
            raise ModelNotFound(f"model {repo!r} is not a local folder, not a shipped default "
                                f"({', '.join(shipped_models()) or 'none'}), and not in the Hub cache (offline: "
                                "HF_HUB_OFFLINE is set)") from None
        cause = err.__cause__ or err
        raise ModelNotFound(f"model {repo!r} is not a local folder or a shipped default, not in the Hub cache, and "
                            f"the Hub could not be reached ({_first_line(cause)})") from None
    except GatedRepoError:
        raise ModelNotFound(f"model {repo!r}: the Hub repo is gated or private (log in with `hf auth login` or "
                            "set HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise ModelNotFound(f"model {repo!r} is not a local folder, not a shipped default, and no such Hub repo") from None
    except RevisionNotFoundError:
        raise ModelNotFound(f"model {repo!r}: the Hub repo has no revision {revision!r}") from None
    except Exception as err:  # HTTP errors, proxies, timeouts, a full disk: huggingface_hub says which
        raise ModelNotFound(f"model {repo!r}: Hub download failed ({_first_line(err)})") from None
    return Path(path)


def resolve_model(name: str) -> Path:
    """Model folder for a local path, a shipped name, or a Hub repo id."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    shipped = shipped_root() / name
    if (shipped / "config.json").is_file():
        return shipped
    if REPO_ID.match(name) and not path.exists():
        return _hub_download(name)
    raise ModelNotFound(f"model {name!r} is not a local folder, not a shipped default and not a Hub repo id "
                        f"(owner/name){did_you_mean(name)} (shipped: {', '.join(shipped_models()) or 'none'})")


def did_you_mean(name: str) -> str:
    """': did you mean X?' naming the shipped models closest to a mistyped name (several only when equally
    close), else ''."""
    names = shipped_models()
    close = difflib.get_close_matches(name, names, n=len(names), cutoff=0.6)
    score = [difflib.SequenceMatcher(None, name, c).ratio() for c in close]
    best = [c for c, r in zip(close, score) if r == max(score)]
    return f": did you mean {' or '.join(sorted(best))}?" if best else ""


def read_config(folder: Path) -> ModelConfig:
    """A model folder's config.json, parsed and checked field by field (before anything is allocated)."""
    try:
        raw = read_small_json(folder / "config.json", CONFIG_MAX_BYTES)
    except FileNotFoundError:
        raise BadCheckpoint(f"{folder}: no config.json (not an mvq model folder)") from None
    except InputError as err:
        raise BadCheckpoint(str(err)) from None
    except OSError as err:
        raise BadCheckpoint(f"{folder}/config.json cannot be read ({err.strerror or err})") from None
    try:
        return ModelConfig.from_dict(raw)
    except (ConfigError, TypeError, ValueError) as err:
        raise BadCheckpoint(f"{folder}/config.json: {err}") from None


def write_config(folder: Path, cfg: ModelConfig, card: bool = True, name: str | None = None) -> None:
    """Replace config.json atomically (and README.md, the card written from it and titled `name` or the
    folder's name, unless card=False). A config written by a newer mvq is refused (ConfigError), not rewritten."""
    cfg.check()
    text = json.dumps(cfg.to_dict(), indent=2) + "\n"
    atomic_write(folder / "config.json", lambda p: Path(p).write_text(text))
    if card:
        atomic_write(folder / "README.md", lambda p: Path(p).write_text(model_card(cfg, name or folder.name)))


def update_records(folder: Path, **records) -> ModelConfig:
    """Replace records of a model folder's config.json (eval=..., say) and its card; config.json is read afresh,
    as another command may have written it meanwhile. Returns the new config."""
    cfg = dataclasses.replace(read_config(folder), **records)
    write_config(folder, cfg)
    return cfg


def load_weights(module: torch.nn.Module, file: Path, config_name: str = "config.json") -> None:
    """Strict safetensors load; every failure becomes one BadCheckpoint line naming the file."""
    from safetensors.torch import load_file

    try:
        state = load_file(file)
    except FileNotFoundError:
        raise BadCheckpoint(f"{file}: missing")
    except (SafetensorError, OSError, ValueError) as err:
        raise BadCheckpoint(f"{file}: not a readable safetensors file ({err})")
    if hasattr(module, "upgrade_state_dict"):
        state = module.upgrade_state_dict(state)
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(tensor.float().isfinite().all()):
            raise BadCheckpoint(f"{file}: tensor {key} holds NaN or infinite values")
        if not tensor.is_floating_point() and key in dict(module.named_parameters()):
            raise BadCheckpoint(f"{file}: parameter {key} is {tensor.dtype}, not a float tensor")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BadCheckpoint(f"{file}: weights do not match {config_name} ({str(err).splitlines()[0]})")


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_pipeline(folder: Path, tokenizer: Tokenizer, prior: torch.nn.Module | None = None,
                  card: str | None = None, name: str | None = None, maskgit_prior: torch.nn.Module | None = None,
                  **records) -> Path:
    """Write (or update) a model folder; files are replaced atomically one by one.

    `records` replace config.json's records of that name (training, prior_training, maskgit_prior_training,
    metrics, eval; None removes one); the others, sections mvq does not know, and a prior (AR `prior` or
    `maskgit_prior`) not given here stay as the folder had them, a prior only if the folder's tokenizer is this
    one (else it goes, with its records), an evaluation only if the tokenizer and the prior it sampled with
    stay. README.md is the card written from the new config.json, titled `name`
    (default: the folder's name), unless `card` is given. Nothing is written unless the whole new config
    checks out."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    old = read_config(folder) if (folder / "config.json").exists() else None
    cfg = dataclasses.replace(old, tokenizer=tokenizer.cfg) if old is not None else ModelConfig(tokenizer.cfg)
    cfg = dataclasses.replace(cfg, **records)
    given = {"ar": prior, "maskgit": maskgit_prior}
    for kind_name, module in given.items():
        if module is not None:
            setattr(cfg, PRIOR_KINDS[kind_name].key, module.cfg)
    # A prior the folder holds models the tokens of the tokenizer it was trained with: it stays only beside
    # that tokenizer. Beside another one (same vocabulary or not) it would sample wrong images silently.
    kept = [name for name in (old.prior_kinds if old is not None else []) if given[name] is None]
    same_tokenizer = old is not None and _holds_tokenizer(folder, old, tokenizer)
    dropped = [] if not kept or same_tokenizer else kept
    for kind_name in dropped:
        kind = PRIOR_KINDS[kind_name]
        cfg = dataclasses.replace(cfg, **{kind.key: None, kind.record: None})
    # An evaluation measured a tokenizer and the prior it sampled with: it goes with another tokenizer, and when
    # that prior is replaced or dropped (or, where it sampled with none, when one comes); unless `eval` is given.
    if old is not None and old.eval is not None and "eval" not in records:
        sampled = _sampled_with(old)
        changed = [k for k, module in given.items() if module is not None] + dropped
        if not same_tokenizer or (sampled in changed) or (sampled is None and changed):
            cfg = dataclasses.replace(cfg, eval=None)
    cfg.check()
    cfg.check_rewritable()  # before any file is replaced
    atomic_write(folder / "tokenizer.safetensors", lambda p: save_file(_state(tokenizer), p))
    for kind_name, module in given.items():
        if module is not None:
            atomic_write(folder / PRIOR_KINDS[kind_name].file, lambda p, m=module: save_file(_state(m), p))
    write_config(folder, cfg, card=card is None, name=name)
    for kind_name in dropped:  # after config.json no longer names it
        (folder / PRIOR_KINDS[kind_name].file).unlink(missing_ok=True)
    if card is not None:
        atomic_write(folder / "README.md", lambda p: Path(p).write_text(card))
    return folder


def _sampled_with(cfg: ModelConfig) -> str | None:
    """The prior kind ("ar", "maskgit") a folder's evaluation sampled with; None where it had no prior. Records
    older than the MaskGIT prior say no sampler: theirs was the AR prior, if the folder had one."""
    label = cfg.eval.sampler
    if label is None:
        return "ar" if cfg.prior is not None else None
    return "maskgit" if label.startswith("MaskGIT") else "ar"


def push_folder(folder: Path, repo_id: str, private: bool = False, revision: str | None = None) -> str:
    from huggingface_hub import HfApi

    bounded_hub_session()
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision,
                             allow_patterns=["config.json", "*.safetensors", "README.md"])
    return str(getattr(info, "commit_url", info))


# What `mvq train`, `mvq eval` and scripts/compare.py write into a model folder; anything else is the user's.
MODEL_ENTRIES = frozenset({"config.json", "tokenizer.safetensors", "README.md", "checkpoints", "eval.json"}
                          | {k.file for k in PRIOR_KINDS.values()} | {k.checkpoints for k in PRIOR_KINDS.values()})
ATOMIC_TEMP = re.compile(r"^\..+\.tmp-\d+$")  # files.atomic_write's temp files, left by a kill


def is_model_folder(folder: Path) -> bool:
    """A folder this tool wrote: config.json with an "mvq_format" key."""
    try:
        cfg = read_small_json(folder / "config.json", CONFIG_MAX_BYTES)
    except (OSError, InputError):
        return False
    return isinstance(cfg, dict) and "mvq_format" in cfg


def swap_in(out: Path, write: Callable[[Path], None]) -> None:
    """Write a complete model folder beside OUT (OUT.tmp-XXXX, same parent), then put it in OUT's place.

    OUT's old content (an older model, its prior and eval, the run's checkpoints) goes only once the new
    folder is whole; if anything fails before, OUT is left as it was and the temporary folder removed.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    old = tmp.with_name(tmp.name.replace(".tmp-", ".old-", 1))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700; a model folder is as readable as any other
        write(tmp)
        if out.exists():
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old, out)
                raise
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
