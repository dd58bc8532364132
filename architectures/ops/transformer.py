"""Sliding-window causal softmax attention with a key/value cache, and rotary position embeddings.

Each query at absolute position p attends to the keys at positions p - window, ..., p (itself and
the `window` steps before it). The cache holds the keys and values of the last `window` steps, so
a sequence processed in segments, or one step at a time, gives the same outputs as one pass.
Layouts (inputs batch, time, head, dim; caches heads before time):

    q, k, v (B, L, H, d)   cache (k (B, H, W, d), v (B, H, W, d))   start (B,) int64

`start` is the absolute position of the segment's first step; cache slot j holds position
start - W + j, and slots with a negative position (not yet written) are masked out.
Rotary embeddings: Su et al. 2021 (RoFormer), in the half-split layout of GPT-NeoX / Llama.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from architectures.errors import BackboneError

KVCache = tuple[torch.Tensor, torch.Tensor]


def rotary_inverse_frequencies(head_dim: int, base: float) -> torch.Tensor:
    """base ** (-2i / d) for i < d / 2, in float64."""
    return base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)


def apply_rotary(x: torch.Tensor, positions: torch.Tensor, inverse_frequencies: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, L, H, d) by angle position * frequency on pairs (i, i + d/2).

    Angles are formed in float64 from integer positions, so a step at position p gets bitwise the
    same rotation whether it is processed in a long segment or alone.
    """
    angles = positions.to(torch.float64)[..., None] * inverse_frequencies.to(x.device)  # (B, L, d/2)
    cos, sin = (f(angles).to(x.dtype)[:, :, None] for f in (torch.cos, torch.sin))
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache, start: torch.Tensor) -> None:
    if q.dim() != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise BackboneError(
            f"attention: q, k, v shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}; "
            "expected (B, L, H, d) each"
        )
    batch, _, heads, d_k = q.shape
    cache_k, cache_v = cache
    if (
        cache_k.dim() != 4
        or (cache_k.shape[0], cache_k.shape[1], cache_k.shape[3]) != (batch, heads, d_k)
        or (cache_v.shape[:3] != cache_k.shape[:3])
    ):
        raise BackboneError(
            f"attention: cache shapes {tuple(cache_k.shape)}, {tuple(cache_v.shape)}; expected (B, H, W, d) to match "
            f"k {tuple(k.shape)}"
        )
    if tuple(start.shape) != (batch,):
        raise BackboneError(f"attention: start has shape {tuple(start.shape)}; expected ({batch},)")


def sliding_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cache: KVCache,
    start: torch.Tensor,
    block_size: int = 128,
    scale: float | None = None,
) -> tuple[torch.Tensor, KVCache]:
    """Causal attention over a window of `W = cache[0].shape[2]` past steps, blockwise in queries.

    Queries are cut into blocks of C = min(block_size, L); a block attends to the W + C keys that
    end with it (F.scaled_dot_product_attention with an explicit mask), so cost and memory are
    O(L (W + C)). Returns the output (B, L, H, d_v) and the cache of the last W steps.
    """
    _check_inputs(q, k, v, cache, start)
    batch, length, heads, d_k = q.shape
    cache_k, cache_v = cache
    window = cache_k.shape[2]
    # Heads first; key slot j is position start - W + j.
    keys = torch.cat([cache_k.to(k.dtype), k.transpose(1, 2)], dim=2)  # (B, H, W + L, d)
    values = torch.cat([cache_v.to(v.dtype), v.transpose(1, 2)], dim=2)
    # The cache keeps at least its own precision (float32 caches stay float32 under autocast).
    new_cache = tuple(
        x[:, :, length:].to(torch.promote_types(c.dtype, x.dtype)) for x, c in ((keys, cache_k), (values, cache_v))
    )

    block = min(block_size, length)
    n_blocks = -(-length // block)
    pad = n_blocks * block - length
    span = window + block
    query_blocks = F.pad(q, (0, 0, 0, 0, 0, pad)).unflatten(1, (n_blocks, block)).permute(0, 1, 3, 2, 4)
    if n_blocks == 1:  # one block (a single step, or a short segment): the keys as they are
        key_blocks, value_blocks = keys[:, None], values[:, None]
    else:  # block i reads key slots [i C, i C + W + C)
        key_blocks, value_blocks = (
            F.pad(x, (0, 0, 0, pad)).unfold(2, span, block).permute(0, 2, 1, 4, 3) for x in (keys, values)
        )  # (B, N, H, W + C, d)

    device = q.device
    offset = torch.arange(block, device=device)[:, None] + window - torch.arange(span, device=device)  # p - a
    in_window = (offset >= 0) & (offset <= window)  # (C, W + C)
    key_position = (
        start[:, None, None]
        - window
        + block * torch.arange(n_blocks, device=device)[None, :, None]
        + torch.arange(span, device=device)
    )  # (B, N, W + C)
    mask = in_window & (key_position >= 0)[:, :, None, :]  # (B, N, C, W + C); every row keeps its own step
    o = F.scaled_dot_product_attention(query_blocks, key_blocks, value_blocks, attn_mask=mask[:, :, None], scale=scale)
    o = o.permute(0, 1, 3, 2, 4).flatten(1, 2)[:, :length]  # (B, L, H, d_v)
    return o, new_cache


def sliding_window_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cache: KVCache,
    start: torch.Tensor,
    scale: float | None = None,
) -> tuple[torch.Tensor, KVCache]:
    """The same attention as a plain loop over batch items and queries (for tests, in float64)."""
    _check_inputs(q, k, v, cache, start)
    window = cache[0].shape[2]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    keys = torch.cat([cache[0].transpose(1, 2), k], dim=1)  # (B, W + L, H, d)
    values = torch.cat([cache[1].transpose(1, 2), v], dim=1)
    outputs = []
    for b in range(q.shape[0]):
        rows = []
        for t in range(q.shape[1]):
            first = max(t, window - int(start[b]))  # slot t is position start + t - W; skip negative ones
            scores = torch.einsum("hd,jhd->hj", q[b, t], keys[b, first : t + window + 1]) * scale
            rows.append(torch.einsum("hj,jhd->hd", scores.softmax(-1), values[b, first : t + window + 1]))
        outputs.append(torch.stack(rows))
    new_cache = (keys[:, q.shape[1] :].transpose(1, 2), values[:, q.shape[1] :].transpose(1, 2))
    return torch.stack(outputs), new_cache
