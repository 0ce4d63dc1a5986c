"""Multi-head attention (with grouped-query / multi-query variants) that returns per-head weights.

Shape legend: ``B`` batch, ``H`` query heads, ``K`` key/value heads (``H % K == 0``), ``G = H / K``
query heads per key/value head, ``T`` query positions, ``S`` key positions, ``E`` model size,
``D = E / H`` head size.

Masks are **keep-masks** (``True``/1 = may attend, ``False``/0 = blocked): the opposite of the
boolean ``attn_mask`` and ``key_padding_mask`` of ``torch.nn.MultiheadAttention``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functional import masked_softmax
from .masks import check_keep_values, make_causal_mask, prepare_mask

__all__ = ["MultiHeadAttention"]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected {name} to be an int but found {type(value).__name__}")
    if value < 1:
        raise ValueError(f"expected {name} >= 1 but found {name}={value}")
    return value


def _heads(projs: list[nn.Linear], x: Tensor, heads: int) -> list[Tensor]:
    """``x`` through each projection, split into contiguous heads: ``(B, L, in) -> (B, heads, L, D)``.

    Contiguous heads let both attention products run as plain batched GEMMs (``matmul`` would copy
    a transposed view first). Without autograd the GEMMs write into one buffer, then the biases,
    the head transpose and the copy of every projection are one pass into a fresh buffer
    (``nn.Linear``'s ``addmm`` would first copy its bias into its output, a pass of its own): on a
    busy 2-core machine each parallel pass costs a wait for the second core, so self-attention
    passes q, k and v together. Same sums in the same order as torch's fused path: ``x @ W^T + b``.
    """
    B, L, _ = x.shape
    P = len(projs)
    params = [t for p in projs for t in (p.weight, p.bias) if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, *params)):
        return [p(x).view(B, L, heads, -1).transpose(1, 2).contiguous() for p in projs]
    x2 = x.reshape(B * L, -1)                                              # (B*L, in)
    y = x2.new_empty(P, B * L, projs[0].out_features)                      # (P, B*L, heads*D)
    for y_p, p in zip(y, projs):
        torch.mm(x2, p.weight.t(), out=y_p)                                # (B*L, in) @ (in, heads*D)
    y = y.view(P, B, L, heads, -1).transpose(2, 3)                         # (P, B, heads, L, D), a view
    out = torch.empty(y.shape, dtype=y.dtype, device=y.device)             # (P, B, heads, L, D), contiguous
    if all(p.bias is None for p in projs):
        out.copy_(y)
    else:
        bias = torch.stack([y.new_zeros(p.out_features) if p.bias is None else p.bias for p in projs])
        torch.add(y, bias.view(P, 1, heads, 1, -1), out=out)               # bias (P, 1, heads, 1, D)
    return list(out.unbind(0))


class MultiHeadAttention(nn.Module):
    """Batched multi-head attention with per-head weights, GQA/MQA, self- and cross-attention.

    Args:
        d_model: model size ``E``; must be divisible by ``num_heads``.
        num_heads: query heads ``H``.
        num_kv_heads: key/value heads ``K``; ``H % K == 0``. ``K < H`` is grouped-query
            attention, ``K == 1`` multi-query attention. Default: ``num_heads``.
        dropout: dropout on the attention weights while training. Default: 0.0.
        bias: add biases to the four projections. Default: ``True``.
        kdim: size of the key input. Default: ``d_model``.
        vdim: size of the value input. Default: ``d_model``.

    Submodules ``q_proj (E -> E)``, ``k_proj (kdim -> K*D)``, ``v_proj (vdim -> K*D)`` and
    ``out_proj (E -> E)`` are plain ``nn.Linear``.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        d_model = _positive_int("d_model", d_model)
        num_heads = _positive_int("num_heads", num_heads)
        num_kv_heads = num_heads if num_kv_heads is None else _positive_int("num_kv_heads", num_kv_heads)
        if d_model % num_heads:
            raise ValueError(
                f"expected d_model divisible by num_heads but found d_model={d_model}, "
                f"num_heads={num_heads} (remainder {d_model % num_heads})"
            )
        if num_heads % num_kv_heads:
            raise ValueError(
                f"expected num_heads divisible by num_kv_heads but found num_heads={num_heads}, "
                f"num_kv_heads={num_kv_heads}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"expected dropout in [0, 1) but found {dropout}")
        self.d_model, self.num_heads, self.num_kv_heads = d_model, num_heads, num_kv_heads
        self.head_dim = d_model // num_heads
        self.kdim = d_model if kdim is None else _positive_int("kdim", kdim)
        self.vdim = d_model if vdim is None else _positive_int("vdim", vdim)
        self.dropout = dropout
        kv_size = num_kv_heads * self.head_dim
        factory = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(d_model, d_model, bias=bias, **factory)
        self.k_proj = nn.Linear(self.kdim, kv_size, bias=bias, **factory)
        self.v_proj = nn.Linear(self.vdim, kv_size, bias=bias, **factory)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias, **factory)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}, "
            f"head_dim={self.head_dim}, dropout={self.dropout}"
        )

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_torch(cls, m: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Build a ``MultiHeadAttention`` holding exactly the weights of ``m``.

        Works for packed (``in_proj_weight``) and separate (``kdim``/``vdim``) projections, with or
        without bias, ``batch_first`` either way (our module is always batch-first: transpose your
        ``(T, B, E)`` inputs). ``add_bias_kv`` and ``add_zero_attn`` have no equivalent here.
        """
        if not isinstance(m, nn.MultiheadAttention):
            raise TypeError(f"expected an nn.MultiheadAttention but found {type(m).__name__}")
        if m.bias_k is not None or m.add_zero_attn:
            raise ValueError("expected add_bias_kv=False and add_zero_attn=False: they are not supported")
        p = m.out_proj.weight
        has_bias = m.in_proj_bias is not None
        ours = cls(m.embed_dim, m.num_heads, dropout=m.dropout, bias=has_bias, kdim=m.kdim,
                   vdim=m.vdim, device=p.device, dtype=p.dtype)
        with torch.no_grad():
            if m._qkv_same_embed_dim:
                wq, wk, wv = m.in_proj_weight.chunk(3, dim=0)            # 3 x (E, E)
            else:
                wq, wk, wv = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
            for lin, w in ((ours.q_proj, wq), (ours.k_proj, wk), (ours.v_proj, wv)):
                lin.weight.copy_(w)
            ours.out_proj.weight.copy_(m.out_proj.weight)
            if has_bias:
                for lin, b in zip((ours.q_proj, ours.k_proj, ours.v_proj), m.in_proj_bias.chunk(3)):
                    lin.bias.copy_(b)
                ours.out_proj.bias.copy_(m.out_proj.bias)
        ours.train(m.training)
        return ours

    # ------------------------------------------------------------------------------------------
    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"expected {name} to be a torch.Tensor but found {type(t).__name__}")
            if not t.is_floating_point():
                raise TypeError(f"expected {name} to be a floating-point tensor but found dtype {t.dtype}")
        if query.dim() not in (2, 3):
            raise ValueError(f"expected query of shape (B, T, E) or (T, E) but found {tuple(query.shape)}")
        if query.shape[-1] != self.d_model:  # before key/value: in self-attention they are query
            raise ValueError(
                f"expected query with embedding size E={self.d_model} but found {tuple(query.shape)}"
            )
        for name, t, size in (("key", key, self.kdim), ("value", value, self.vdim)):
            if t.dim() != query.dim():
                raise ValueError(
                    f"expected {name} to have {query.dim()} dims like query {tuple(query.shape)} but "
                    f"found {tuple(t.shape)}"
                )
            if t.shape[-1] != size:
                raise ValueError(f"expected {name} with last dim {size} but found {tuple(t.shape)}")
        if query.shape[-2] < 1:
            raise ValueError(f"expected at least one query position (T >= 1) but found {tuple(query.shape)}")
        if key.shape[-2] != value.shape[-2] or key.shape[:-2] != value.shape[:-2]:
            raise ValueError(
                f"expected key and value with the same batch and length S but found key "
                f"{tuple(key.shape)} and value {tuple(value.shape)}"
            )
        if key.shape[-2] < 1:
            raise ValueError(f"expected at least one key position (S >= 1) but found {tuple(key.shape)}")
        if query.shape[:-2] != key.shape[:-2]:
            raise ValueError(
                f"expected query and key with the same batch size but found query "
                f"{tuple(query.shape)} and key {tuple(key.shape)}"
            )

    def _keep_mask(self, mask, padding_mask, B, T, S, device) -> Tensor | None:
        """Combine ``mask`` and ``padding_mask`` into one bool keep-mask or None (causal apart).

        Shape ``(B|1, H|1, T|1, S)``: a padding mask alone stays ``(B, 1, 1, S)``, so nothing
        downstream builds or scans a ``(B, T, S)`` copy of it.
        """
        keep = None
        if mask is not None:
            keep = prepare_mask(mask, B, self.num_heads, T, S, device=device)
        if padding_mask is not None:
            pad = check_keep_values(padding_mask, "padding_mask")
            if tuple(pad.shape) != (B, S):
                raise ValueError(
                    f"expected padding_mask of shape (B, S) = ({B}, {S}) (True = real token) but "
                    f"found {tuple(pad.shape)}"
                )
            pad = pad.to(device)[:, None, None, :]                      # (B, 1, 1, S)
            keep = pad if keep is None else keep & pad
        return keep

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        mask: Tensor | None = None,
        padding_mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value`` (self-attention when they are omitted).

        Args:
            query: ``(B, T, E)`` or unbatched ``(T, E)``.
            key: ``(B, S, kdim)`` or ``(S, kdim)``. Default: ``query``.
            value: ``(B, S, vdim)`` or ``(S, vdim)``. Default: ``key``.
            mask: keep-mask (``True``/1 = may attend) of shape ``(S)``, ``(T, S)``, ``(B, T, S)`` or
                ``(B, 1|H, T, S)``; the opposite of ``nn.MultiheadAttention``'s ``attn_mask``.
                Default: ``None``.
            padding_mask: ``(B, S)`` keep-mask, ``True`` = real token (the opposite of
                ``key_padding_mask``). Default: ``None``.
            is_causal: also block keys after the query (top-left aligned, ``make_causal_mask``).
                Default: ``False``.
            need_weights: return per-head weights. ``False`` takes PyTorch's fused
                ``F.scaled_dot_product_attention`` and returns ``None`` weights. Default: ``True``.

        Returns:
            ``out (B, T, E)`` and ``weights (B, H, T, S)`` or ``None``; without the batch dim for
            unbatched input. Queries with every key blocked get zero weights and output
            ``out_proj`` of zero (its bias).
        """
        key = query if key is None else key
        value = key if value is None else value
        self._check_inputs(query, key, value)
        self_attention = key is query and value is query
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if padding_mask is not None and isinstance(padding_mask, Tensor) and padding_mask.dim() == 1:
                padding_mask = padding_mask.unsqueeze(0)

        B, T, _ = query.shape                                   # batch, query positions, embedding
        S = key.shape[1]                                        # key positions
        H, K, D = self.num_heads, self.num_kv_heads, self.head_dim
        keep = self._keep_mask(mask, padding_mask, B, T, S, query.device)  # (B|1, H|1, T|1, S) or None
        dropout_p = self.dropout if self.training else 0.0

        if need_weights:
            if self_attention and K == H:                   # one bias pass for all three
                q, k, v = _heads([self.q_proj, self.k_proj, self.v_proj], query, H)  # 3 x (B, H, T, D)
            else:
                (q,), (k,), (v,) = (_heads([self.q_proj], query, H), _heads([self.k_proj], key, K),
                                    _heads([self.v_proj], value, K))   # (B, H, T, D), 2 x (B, K, S, D)
            # Scale q (T*D values) rather than the scores (T*S values), as torch does.
            scale = 1.0 / math.sqrt(D)
            q = q * scale if q.requires_grad else q.mul_(scale)        # without autograd q is our own buffer
            ctx, weights = self._explicit(q, k, v, keep, is_causal, dropout_p)  # (B, H, T, D), (B, H, T, S)
        else:
            q = self.q_proj(query).view(B, T, H, D).transpose(1, 2)     # (B, H, T, D)
            k = self.k_proj(key).view(B, S, K, D).transpose(1, 2)       # (B, K, S, D)
            v = self.v_proj(value).view(B, S, K, D).transpose(1, 2)     # (B, K, S, D)
            ctx, weights = self._fused(q, k, v, keep, is_causal, dropout_p), None
        out = self.out_proj(ctx.transpose(1, 2).reshape(B, T, H * D))  # (B, T, E)
        if unbatched:
            out = out.squeeze(0)
            weights = None if weights is None else weights.squeeze(0)
        return out, weights

    def _explicit(self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, is_causal: bool,
                  dropout_p: float):
        """Attention with its weights; ``q`` already scaled, ``q``/``k``/``v`` contiguous (``_heads``)."""
        B, H, T, D = q.shape
        K, S = k.shape[1], k.shape[2]
        G = H // K
        q = q.view(B, K, G * T, D)                                  # the G query heads of a kv head, stacked
        scores = q @ k.transpose(-2, -1)                            # (B,K,G*T,D) @ (B,K,D,S) -> (B,K,G*T,S)
        scores = scores.view(B, H, T, S)                            # head h = kv head h // G, group member h % G
        weights = masked_softmax(scores, keep, is_causal=is_causal, inplace=True)  # (B, H, T, S)
        if dropout_p > 0.0:
            weights = F.dropout(weights, p=dropout_p, training=True)
        ctx = weights.view(B, K, G * T, S) @ v                      # (B,K,G*T,S) @ (B,K,S,D) -> (B,K,G*T,D)
        return ctx.view(B, H, T, D), weights

    def _fused(self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, is_causal: bool,
               dropout_p: float) -> Tensor:
        gqa = k.shape[1] != q.shape[1]
        T, S = q.shape[2], k.shape[2]
        if is_causal and keep is None and T == S:
            # Pure causal self-attention: let the kernel build the mask (enables flash kernels).
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True,
                                                  enable_gqa=gqa)
        if is_causal:
            causal = make_causal_mask(T, S, device=q.device, dtype=torch.bool)   # (T, S)
            keep = causal if keep is None else keep & causal
        empty_rows = None
        if keep is not None:
            any_kept = keep.any(dim=-1, keepdim=True)               # (B|1, H|1, T|1, 1)
            if not bool(any_kept.all()):
                empty_rows = ~any_kept
                keep = keep | empty_rows                            # avoid NaN inside the kernel
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout_p,
                                             enable_gqa=gqa)        # (B, H, T, D)
        if empty_rows is not None:
            ctx = ctx.masked_fill(empty_rows, 0.0)                  # fully blocked queries -> 0
        return ctx
