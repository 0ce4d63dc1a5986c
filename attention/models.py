"""A tiny decoder-only transformer built from our ``MultiHeadAttention``, and its shipped weights.

``TinyTransformer`` is the smallest model whose heads learn something worth looking at: token and
position embeddings, ``num_layers`` pre-norm blocks (causal self-attention, optional MLP) and a
linear read-out. Every forward pass returns each layer's per-head attention weights.
``load_induction_model()`` loads the weights trained by ``python -m attention.train``, in which
layer 0 has a previous-token head and layer 1 an induction head (see ``attention.head_metrics``).

Weights are stored as safetensors (plain tensors plus a JSON config in the header): loading never
unpickles anything.

Shape legend: ``B`` batch, ``T`` positions, ``V`` vocabulary, ``E`` model size, ``H`` heads,
``L`` layers.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .multihead import MultiHeadAttention

__all__ = [
    "Block",
    "EmbeddingsToLogits",
    "INDUCTION_WEIGHTS",
    "TinyTransformer",
    "TransformerConfig",
    "induction_embeddings_to_logits",
    "load_induction_model",
    "load_model",
    "read_metadata",
    "save_model",
]

INDUCTION_WEIGHTS = Path(__file__).resolve().parent / "weights" / "induction.safetensors"
_FORMAT = "attention-playground/tiny-transformer/1"


@dataclass(frozen=True)
class TransformerConfig:
    """Size of a :class:`TinyTransformer`.

    Args:
        vocab_size: number of token ids ``V``. Default: 64.
        max_len: longest input ``T`` (number of learned positions). Default: 32.
        d_model: model size ``E``; divisible by ``num_heads``. Default: 64.
        num_heads: heads per layer ``H``. Default: 4.
        num_layers: transformer blocks ``L``. Default: 2.
        d_ff: hidden size of each block's MLP; 0 makes an attention-only model. Default: 0.
        causal: causal self-attention. Only the negative control of a look-ahead test turns it
            off. Default: ``True``.
    """

    vocab_size: int = 64
    max_len: int = 32
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int = 0
    causal: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "causal":
                if not isinstance(value, bool):
                    raise TypeError(f"expected causal to be a bool but found {type(value).__name__}")
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"expected {f.name} to be an int but found {type(value).__name__}")
            low = 0 if f.name == "d_ff" else 1
            if value < low:
                raise ValueError(f"expected {f.name} >= {low} but found {f.name}={value}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"expected d_model divisible by num_heads but found d_model={self.d_model}, "
                f"num_heads={self.num_heads}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TransformerConfig":
        """Build a config from a dict such as ``asdict(config)``; unknown keys are a ``ValueError``."""
        if not isinstance(data, dict):
            raise TypeError(f"expected a dict but found {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TransformerConfig keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)


class Block(nn.Module):
    """Pre-norm block: ``x + attn(ln_attn(x))`` then, when ``d_ff > 0``, ``x + mlp(ln_mlp(x))``.

    The project's one block (:class:`TinyTransformer` and the zoo's ``BlockStack`` stack it).
    Args: ``d_model`` (``E``), ``num_heads`` (``H``), ``d_ff`` (MLP ``Linear(E, d_ff) -> GELU ->
    Linear(d_ff, E)``; 0 = attention only; default 0), ``causal`` (default ``True``).
    Shape: ``x (B, T, E)`` -> ``(x (B, T, E), weights (B, H, T, T) or None)``.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int = 0, causal: bool = True) -> None:
        super().__init__()
        E = d_model
        self.causal = causal
        self.ln_attn = nn.LayerNorm(E)
        self.attn = MultiHeadAttention(E, num_heads)
        if d_ff:
            self.ln_mlp = nn.LayerNorm(E)
            self.mlp = nn.Sequential(nn.Linear(E, d_ff), nn.GELU(), nn.Linear(d_ff, E))
        else:
            self.ln_mlp, self.mlp = None, None

    def forward(self, x: Tensor, need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        a, weights = self.attn(self.ln_attn(x), is_causal=self.causal,
                               need_weights=need_weights)      # (B, T, E), (B, H, T, T)
        x = x + a
        if self.mlp is not None:
            x = x + self.mlp(self.ln_mlp(x))
        return x, weights


class TinyTransformer(nn.Module):
    """Decoder-only transformer that returns every layer's per-head attention weights.

    Args:
        config: sizes, see :class:`TransformerConfig`. Default: ``TransformerConfig()``.

    Attributes:
        config, vocab_size (``V``), max_len (longest ``T``), num_layers, num_heads.

    Shape:
        ``model(idx)``: ``idx (B, T)`` or ``(T,)`` integer token ids in ``0..V-1`` with
        ``1 <= T <= max_len`` -> ``logits (B, T, V)`` (``logits[:, t]`` predicts token ``t + 1``)
        and ``weights``: a list of ``L`` tensors ``(B, H, T, T)``.
    """

    def __init__(self, config: TransformerConfig | None = None) -> None:
        super().__init__()
        config = TransformerConfig() if config is None else config
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"expected config to be a TransformerConfig but found {type(config).__name__}")
        self.config = config
        self.vocab_size, self.max_len = config.vocab_size, config.max_len
        self.num_layers, self.num_heads = config.num_layers, config.num_heads
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.max_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config.d_model, config.num_heads, d_ff=config.d_ff, causal=config.causal)
                                    for _ in range(config.num_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size)
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2 style: N(0, 0.02) everywhere, residual output projections scaled by 1/sqrt(2L).
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02
                if name.endswith("out_proj.weight") or name.endswith("mlp.2.weight"):
                    std /= math.sqrt(2 * self.num_layers)
                nn.init.normal_(p, mean=0.0, std=std)

    def extra_repr(self) -> str:
        c = self.config
        return (f"vocab_size={c.vocab_size}, max_len={c.max_len}, d_model={c.d_model}, "
                f"num_heads={c.num_heads}, num_layers={c.num_layers}, d_ff={c.d_ff}, causal={c.causal}")

    def check_idx(self, idx: object) -> Tensor:
        """Validate token ids and return them as a ``(B, T)`` tensor (``(T,)`` gains a batch dim)."""
        if not isinstance(idx, Tensor):
            raise TypeError(f"expected idx to be a torch.Tensor of token ids but found {type(idx).__name__}")
        if idx.dtype == torch.bool or idx.is_floating_point() or idx.is_complex():
            raise TypeError(f"expected idx to be an integer tensor of token ids but found dtype {idx.dtype}")
        if idx.dim() == 1:
            idx = idx.unsqueeze(0)
        if idx.dim() != 2:
            raise ValueError(f"expected idx of shape (B, T) or (T,) but found {tuple(idx.shape)}")
        B, T = idx.shape
        if not 1 <= T <= self.max_len:
            raise ValueError(f"expected idx with 1 <= T <= max_len={self.max_len} positions but found "
                             f"{tuple(idx.shape)}")
        if B < 1:
            raise ValueError(f"expected at least one sequence (B >= 1) but found {tuple(idx.shape)}")
        low, high = int(idx.min()), int(idx.max())
        if low < 0 or high >= self.vocab_size:
            raise ValueError(f"expected token ids in 0..{self.vocab_size - 1} (vocab_size={self.vocab_size}) "
                             f"but found values in {low}..{high}")
        return idx.long()

    def embed(self, idx: Tensor) -> Tensor:
        """Token plus position embeddings: ``idx (B, T)`` -> ``(B, T, E)``."""
        idx = self.check_idx(idx)
        T = idx.shape[1]
        pos = torch.arange(T, device=idx.device)                      # (T,)
        return self.tok_emb(idx) + self.pos_emb(pos)                  # (B, T, E) + (T, E)

    def forward_embeddings(self, x: Tensor, need_weights: bool = True) -> tuple[Tensor, list[Tensor | None]]:
        """Run the blocks and the read-out on embeddings ``x (B, T, E)`` -> ``(logits, weights)``.

        The part of the model after :meth:`embed`; a float-to-float callable for
        ``attention.check_output_invariance``.
        """
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError("expected x to be a floating-point torch.Tensor of embeddings but found "
                            + (f"dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__))
        if x.dim() != 3 or x.shape[-1] != self.config.d_model or not 1 <= x.shape[1] <= self.max_len:
            raise ValueError(f"expected x of shape (B, T, E) with E={self.config.d_model} and "
                             f"1 <= T <= {self.max_len} but found {tuple(x.shape)}")
        weights = []
        for block in self.blocks:
            x, w = block(x, need_weights=need_weights)                # (B, T, E), (B, H, T, T)
            weights.append(w)
        return self.head(self.ln_f(x)), weights                       # (B, T, V)

    def forward(self, idx: Tensor, need_weights: bool = True) -> tuple[Tensor, list[Tensor | None]]:
        """``idx (B, T)`` or ``(T,)`` token ids -> ``(logits (B, T, V), [weights (B, H, T, T)] * L)``.

        ``need_weights=False`` takes the fused attention kernel (faster, for training) and returns
        ``None`` for every layer's weights. A ``(T,)`` input is treated as a batch of one.
        """
        return self.forward_embeddings(self.embed(idx), need_weights=need_weights)


class EmbeddingsToLogits(nn.Module):
    """``x (B, T, E)`` embeddings -> ``logits (B, T, V)``: a model's float-to-float part.

    The look-ahead checks (``check_output_invariance``, ``dependency_map``) perturb or
    differentiate float inputs; token ids are neither, so they check this path (everything after
    the embeddings, where any leak would be).
    """

    def __init__(self, model: TinyTransformer) -> None:
        super().__init__()
        if not isinstance(model, TinyTransformer):
            raise TypeError(f"expected a TinyTransformer but found {type(model).__name__}")
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.forward_embeddings(x, need_weights=False)[0]


def induction_embeddings_to_logits() -> EmbeddingsToLogits:
    """The shipped model's embeddings -> logits path, for
    ``python -m attention.verify --model attention.models:induction_embeddings_to_logits --dim 64 --seq-len 32``.
    """
    return EmbeddingsToLogits(load_induction_model())


# ------------------------------------------------------------------------------------------------
# Saving and loading (safetensors: tensors + a JSON header, no pickle)

def save_model(model: TinyTransformer, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and config (plus JSON-able ``metadata``) to a safetensors file."""
    from safetensors.torch import save_file

    if not isinstance(model, TinyTransformer):
        raise TypeError(f"expected a TinyTransformer but found {type(model).__name__}")
    path = Path(path)
    header = {"format": _FORMAT, "config": json.dumps(asdict(model.config))}
    for key, value in (metadata or {}).items():
        if key in header:
            raise ValueError(f"metadata key {key!r} is reserved")
        header[key] = json.dumps(value)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=header)
    return path


def _open(path: Path):
    from safetensors import safe_open

    if not path.is_file():
        raise ValueError(f"weights file {path} does not exist")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as err:  # safetensors raises its own error types (and OSError) for bad files
        raise ValueError(f"weights file {path} is not a readable safetensors file: {err}") from None


def read_metadata(path: str | Path = INDUCTION_WEIGHTS) -> dict[str, Any]:
    """The JSON metadata stored with the weights (``config``, and what training recorded)."""
    path = Path(path)
    with _open(path) as f:
        raw = f.metadata() or {}
    out = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value) if key != "format" else value
        except json.JSONDecodeError as err:
            raise ValueError(f"weights file {path}: metadata entry {key!r} is not valid JSON ({err})") from None
    return out


def load_model(path: str | Path) -> TinyTransformer:
    """Load a :class:`TinyTransformer` saved by :func:`save_model`, in eval mode.

    Raises:
        ValueError: naming the file and the problem when it is missing, not safetensors, has no
            or a bad config, lacks or adds tensors, or holds a tensor of the wrong shape or dtype
            or with non-finite values.
    """
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != _FORMAT:
        raise ValueError(f"weights file {path}: expected metadata format {_FORMAT!r} but found "
                         f"{meta.get('format')!r}")
    try:
        config = TransformerConfig.from_dict(meta.get("config"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"weights file {path}: bad config in metadata: {err}") from None
    with torch.random.fork_rng(devices=[]):                          # init draws: not the caller's RNG
        model = TinyTransformer(config)
    want = model.state_dict()
    try:
        with _open(path) as f:
            found = {k: f.get_tensor(k) for k in f.keys()}
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(f"weights file {path}: could not read tensors: {err}") from None
    missing, unexpected = sorted(set(want) - set(found)), sorted(set(found) - set(want))
    if missing or unexpected:
        raise ValueError(f"weights file {path}: tensors do not match {config}: missing {missing}, "
                         f"unexpected {unexpected}")
    for name, ref in want.items():
        t = found[name]
        if tuple(t.shape) != tuple(ref.shape):
            raise ValueError(f"weights file {path}: tensor {name!r} has shape {tuple(t.shape)} but the "
                             f"config needs {tuple(ref.shape)}")
        if t.dtype != ref.dtype:
            raise ValueError(f"weights file {path}: tensor {name!r} has dtype {t.dtype}, expected {ref.dtype}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"weights file {path}: tensor {name!r} holds NaN or infinite values")
    model.load_state_dict(found, strict=True)
    return model.eval()


def load_induction_model() -> TinyTransformer:
    """The shipped model trained by ``python -m attention.train`` (defaults), in eval mode.

    Layer 0 holds a previous-token head and layer 1 an induction head; its training metrics are in
    ``read_metadata()``. ``vocab_size`` and ``max_len`` say which inputs it takes.
    """
    return load_model(INDUCTION_WEIGHTS)
