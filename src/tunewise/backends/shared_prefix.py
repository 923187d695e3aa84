"""Attention over a prompt prefix all rows of a batch share, read once instead of copied into every row.

Batched decoding after a long shared prefix (the instruction, fixed examples) would otherwise copy the
prefix's keys and values into each row's cache, and the cache grows by concatenation at every step, so
each step copies n rows x prefix again. Here each row's cache holds only its own tokens; at every layer
the queries attend to the prefix (batch 1, broadcast over the rows) and to their own keys in one softmax:
the same attention, without the copies. It plugs into transformers' attention interface, so any model
that dispatches attention through it (Llama, Qwen, Mistral, Gemma, ...) gets it; a model that does not is
noticed (no call reached us) and decoded the plain way. Soft-capped attention scores (Gemma 2) are capped
here as in transformers' eager attention; a sliding window is not modelled (the caller decodes without the
shared prefix when a window could bind), nor are attention sinks.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Any

NAME = "tunewise_shared_prefix"
_ACTIVE: contextvars.ContextVar["_Prefix | None"] = contextvars.ContextVar(NAME, default=None)
_registered = False


class Unsupported(RuntimeError):
    """The model's attention needs something this implementation does not do (a binding window, sinks)."""


@dataclass
class _Prefix:
    kv: list[tuple[Any, Any]]  # per layer: keys and values of the prefix, (1, kv heads, length, head dim)
    calls: int = 0


def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention signature: query (b, heads, t, d), key/value (b, kv heads, s, d), an additive
    mask (b, 1, t, s); returns (b, t, heads, d). Without an active prefix it is plain SDPA."""
    prefix = _ACTIVE.get()
    if prefix is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=dropout, **kwargs)
    if kwargs.get("s_aux") is not None:
        raise Unsupported("attention sinks")
    import torch
    prefix_keys, prefix_values = prefix.kv[module.layer_idx]
    n, window = prefix_keys.shape[2], kwargs.get("sliding_window")
    # a query and a key are at most n + s - 1 positions apart: a window of n + s or more hides nothing
    if window is not None and n + key.shape[2] > window:
        raise Unsupported(f"a sliding window of {window} over {n + key.shape[2]} keys")
    prefix.calls += 1
    b, heads, t, d = query.shape
    groups = key.shape[1]
    # query heads grouped by the key/value head they read (as repeat_kv orders them): no repeated keys
    q = query.reshape(b, groups, heads // groups, t, d)
    scale = d ** -0.5 if scaling is None else scaling
    scores = torch.cat([torch.einsum("bgrtd,gpd->bgrtp", q, prefix_keys[0]),
                        torch.einsum("bgrtd,bgsd->bgrts", q, key)], dim=-1) * scale
    softcap = kwargs.get("softcap")
    if softcap is not None:  # as eager attention caps them (Gemma 2): before the mask
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        scores[..., n:] += attention_mask[:, :, None]
    weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    out = (torch.einsum("bgrtp,gpd->bgrtd", weights[..., :n], prefix_values[0])
           + torch.einsum("bgrts,bgsd->bgrtd", weights[..., n:], value))
    return out.reshape(b, heads, t, d).transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def reading(model, prefix_kv):
    """Within the block, `model`'s attention reads `prefix_kv` before each row's own cache. Yields the
    state: `state.calls` stays 0 if the model never dispatched attention to us."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        AttentionInterface.register(NAME, attention)
        _registered = True
    config = model.get_decoder().config
    before = config._attn_implementation
    state = _Prefix(prefix_kv)
    token = _ACTIVE.set(state)
    config._attn_implementation = NAME
    try:
        yield state
    finally:
        config._attn_implementation = before
        _ACTIVE.reset(token)


def additive_mask(own, queries: int, dtype):
    """(rows, 1, queries, keys) mask for rows' own tokens: a query sees the keys up to its own position that
    are not padding (`own`: rows x keys, True for a real token; the last `queries` keys are the queries)."""
    import torch
    keys = own.shape[1]
    causal = torch.ones(queries, keys, dtype=torch.bool, device=own.device).tril(keys - queries)
    allowed = causal[None] & own[:, None, :]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=own.device).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[:, None]
