"""Gated Slot Attention (GSA): the core two-pass recurrence, in three forms plus fla dispatch.

Algorithm from Zhang et al. 2024, "Gated Slot Attention for Efficient Linear-Time Sequence
Modeling"; tensor layouts and conventions follow fla's `fla.ops.gsa` (fla-core 0.6.0) so that
the Triton kernels can be swapped in on CUDA. Written from the equations, not from fla's code.

Per head, with query q_t, key k_t (d_k), value v_t (d_v), slot write weights s_t (m) and
per-slot log forget gates g_t <= 0 (m):

    pass 1:  Hk_t = Hk_{t-1} diag(exp g_t) + k_t s_t^T          (d_k, m)   o1_t = scale q_t^T Hk_t
             p_t  = softmax(o1_t)                                (over the m slots)
    pass 2:  Hv_t = diag(exp g_t) Hv_{t-1} + s_t v_t^T          (m, d_v)   o_t  = Hv_t^T p_t

Each pass is gated linear attention with a per-slot (vector) decay; the softmax between them
is per token, so the chunked form runs pass 1 over the whole segment, takes the softmax, then
runs pass 2. Layouts (fla's, batch then time then head):

    q (B, T, HQ, d_k)   k (B, T, H, d_k)   v (B, T, H, d_v)   s, g (B, T, H, m)
    state (Hk (B, H, d_k, m), Hv (B, H, m, d_v)), kept in float32 (float64 if given float64)

HQ may be a multiple of H (grouped queries); heads in a group share k, v, s, g and so share
the state. `scale` defaults to d_k ** -0.5 as in fla's op (the GSA layer passes 1.0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from architectures.errors import BackboneError
from architectures.ops import load_fla

GSAState = tuple[torch.Tensor, torch.Tensor]


def _check_inputs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: torch.Tensor, g: torch.Tensor, initial_state: GSAState | None
) -> None:
    batch, length, n_q_heads, d_k = q.shape
    n_heads, n_slots = k.shape[2], s.shape[-1]
    expected = {
        "k": (k, (batch, length, n_heads, d_k)),
        "v": (v, (batch, length, n_heads, v.shape[-1])),
        "s": (s, (batch, length, n_heads, n_slots)),
        "g": (g, (batch, length, n_heads, n_slots)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise BackboneError(
                f"gsa: {name} has shape {tuple(tensor.shape)}; expected {shape} to match q {tuple(q.shape)}"
            )
    if n_q_heads % n_heads:
        raise BackboneError(f"gsa: {n_q_heads} query heads is not a multiple of {n_heads} key/value heads")
    if initial_state is not None:
        hk, hv = initial_state
        want_k, want_v = (batch, n_heads, d_k, n_slots), (batch, n_heads, n_slots, v.shape[-1])
        if tuple(hk.shape) != want_k or tuple(hv.shape) != want_v:
            raise BackboneError(
                f"gsa: initial state shapes {tuple(hk.shape)}, {tuple(hv.shape)}; expected {want_k}, {want_v}"
            )


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _zero_state(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: torch.Tensor, dtype: torch.dtype) -> GSAState:
    batch, _, n_heads, d_k = k.shape
    n_slots, d_v = s.shape[-1], v.shape[-1]
    return (
        torch.zeros(batch, n_heads, d_k, n_slots, device=q.device, dtype=dtype),
        torch.zeros(batch, n_heads, n_slots, d_v, device=q.device, dtype=dtype),
    )


def _heads_first(groups: int, dtype: torch.dtype, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """(B, T, H, D) -> (B, H*groups, T, D) in `dtype`, each key/value head repeated per query group."""
    out = []
    for x in tensors:
        x = x.transpose(1, 2).to(dtype).contiguous()
        out.append(x.repeat_interleave(groups, dim=1) if groups > 1 else x)
    return out


def _expand_state(state: GSAState, groups: int, dtype: torch.dtype) -> GSAState:
    return tuple(h.to(dtype).repeat_interleave(groups, dim=1) if groups > 1 else h.to(dtype) for h in state)


def _shrink_state(state: GSAState, groups: int) -> GSAState:
    """One state per key/value head: the heads of a group hold identical states."""
    return tuple(h[:, ::groups] if groups > 1 else h for h in state)


def gsa_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: GSAState | None = None,
    chunk_size: int = 16,
) -> tuple[torch.Tensor, GSAState]:
    """Chunked parallel form: returns (o (B, T, HQ, d_v), final state).

    With cumulative log gates b_t = g_1 + ... + g_t inside a chunk of C steps (per slot), a
    write at j reaches step t >= j of the same chunk with weight exp(b_t - b_j) (see
    `_IntraChunk`) and the chunk's start state reaches step t with weight exp(b_t); across
    chunks the states are advanced by the only Python loop: H <- H * exp(b_C) + (the chunk's
    writes weighted by exp(b_C - b_j)). Pass 1 is computed for the whole segment, then the
    softmax, then pass 2.
    """
    _check_inputs(q, k, v, s, g, initial_state)
    if chunk_size < 1:
        raise BackboneError(f"gsa: chunk_size must be a positive integer, got {chunk_size}")
    batch, length, n_q_heads, d_k = q.shape
    groups = n_q_heads // k.shape[2]
    out_dtype, dtype = q.dtype, _compute_dtype(q)
    scale = d_k**-0.5 if scale is None else scale
    if initial_state is None:
        initial_state = _zero_state(q, k, v, s, dtype)
    hk, hv = _expand_state(initial_state, groups, dtype)
    (q,) = _heads_first(1, dtype, q)
    k, v, s, g = _heads_first(groups, dtype, k, v, s, g)

    # Pad time to whole chunks: padded steps have g = 0 (no decay) and s = 0 (no write), so
    # they leave the state unchanged; their outputs are dropped.
    pad = (-length) % chunk_size
    if pad:
        q, k, v, s, g = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v, s, g))
    n_chunks = (length + pad) // chunk_size
    q, k, v, s, g = (x.unflatten(2, (n_chunks, chunk_size)) for x in (q, k, v, s, g))  # (B, H, N, C, D)

    b = g.cumsum(-2)
    b_end = b[..., -1:, :]  # (B, H, N, 1, m)
    chunk_decay = b_end.exp()
    s_to_end = s * (b_end - b).exp()  # writes as seen at the chunk's end
    decay_in = b.exp()  # decay from the chunk's start to each step
    intra = _IntraChunk(b, s)

    # Pass 1: keys k, "values" s, decay on the slot (value) side.
    q = q * scale
    o1_intra = intra.keys_to_slots(q @ k.transpose(-1, -2))
    hk_starts, hk = _scan_states(hk, chunk_decay, k.transpose(-1, -2) @ s_to_end)
    o1 = o1_intra + (q @ hk_starts) * decay_in

    # Softmax over slots, then pass 2: queries p, keys s, values v, decay on the slot (key) side.
    p = o1.softmax(-1)
    hv_starts, hv = _scan_states(hv, chunk_decay.transpose(-1, -2), s_to_end.transpose(-1, -2) @ v)
    o = intra.slots_to_steps(p) @ v + (p * decay_in) @ hv_starts

    o = o.flatten(2, 3)[:, :, :length].transpose(1, 2).to(out_dtype)
    return o, _shrink_state((hk, hv), groups)


# Largest |b| (log decay from the chunk's start) for which the factorised intra-chunk form is
# used: its factors then stay within exp(+-LOG_DECAY_LIMIT) and the products it forms within
# exp(2 * LOG_DECAY_LIMIT), far from float32 overflow. Later rows use exact pairwise weights.
LOG_DECAY_LIMIT = 40.0


class _IntraChunk:
    """Contributions of writes to steps of the same chunk, weighted by exp(b_t - b_j), j <= t.

    Fast form: exp(b_t - b_j) = exp(b_t) * exp(-b_j), so both passes are plain masked matmuls;
    rounding stays relative to the exact weights (each sum is formed in the rescaled units and
    scaled back once). Rows t that have seen |b_j| > LOG_DECAY_LIMIT for some j <= t (very
    strong forgetting) would overflow the factors: they are recomputed from the exact pair
    tensor s_j * exp(b_t - b_j) (C x C x m per chunk, every exponent <= 0 for gates <= 0) and
    spliced in. Which form a row takes depends only on that row and earlier ones, so outputs
    stay exactly causal.
    """

    def __init__(self, b: torch.Tensor, s: torch.Tensor) -> None:
        chunk_size = b.shape[-2]
        self.causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=b.device).tril()
        with torch.no_grad():
            seen = b.abs().cummax(-2).values.amax(-1, keepdim=True)  # (B, H, N, C, 1)
            self.exact_rows = seen > LOG_DECAY_LIMIT
        bounded = b.clamp(-LOG_DECAY_LIMIT, LOG_DECAY_LIMIT)  # changes only rows computed exactly
        self.row = bounded.exp()
        self.col = s * (-bounded).exp()
        self.exact_index = self.exact_rows.any(-2).flatten().nonzero().squeeze(1)  # chunks to redo
        self.pairs = None
        if self.exact_index.numel():
            b_sel, s_sel = self._select(b), self._select(s)  # (n, C, m)
            log_pair = torch.where(self.causal[:, :, None], b_sel.unsqueeze(-2) - b_sel.unsqueeze(-3), float("-inf"))
            self.pairs = log_pair.exp() * s_sel.unsqueeze(-3)  # (n, C, C, m)

    def _select(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(0, 2).index_select(0, self.exact_index)

    def _splice(self, fast: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
        exact = fast.flatten(0, 2).index_copy(0, self.exact_index, exact).view_as(fast)
        return torch.where(self.exact_rows, exact, fast)

    def keys_to_slots(self, scores: torch.Tensor) -> torch.Tensor:
        """Pass 1: sum_{j<=t} scores[t, j] s_j exp(b_t - b_j) -> (B, H, N, C, m)."""
        scores = scores.masked_fill(~self.causal, 0.0)
        out = (scores @ self.col) * self.row
        if self.pairs is None:
            return out
        return self._splice(out, (self._select(scores).unsqueeze(-2) @ self.pairs).squeeze(-2))

    def slots_to_steps(self, p: torch.Tensor) -> torch.Tensor:
        """Pass 2: A[t, j] = sum_m p_t s_j exp(b_t - b_j) for j <= t -> (B, H, N, C, C)."""
        out = ((p * self.row) @ self.col.transpose(-1, -2)).masked_fill(~self.causal, 0.0)
        if self.pairs is None:
            return out
        return self._splice(out, (self.pairs @ self._select(p).unsqueeze(-1)).squeeze(-1))


def _scan_states(h: torch.Tensor, decay: torch.Tensor, writes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inter-chunk recurrence for one pass.

    h (B, H, R, S) is the state before the first chunk; `writes` (B, H, N, R, S) and `decay`
    (B, H, N, R or 1, S or 1 broadcastable) are per chunk. Returns the states at the start of
    every chunk (B, H, N, R, S) and the final state. Slices come from one `unbind` and the
    states are stacked once, so backward stays linear in N.
    """
    starts = []
    for chunk_decay, chunk_writes in zip(decay.unbind(2), writes.unbind(2)):
        starts.append(h)
        h = h * chunk_decay + chunk_writes
    return torch.stack(starts, dim=2), h


def _recurrent_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    g: torch.Tensor,
    hk: torch.Tensor,
    hv: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step on (B, H, D) inputs (q already scaled) and (B, H, ., .) states: (o, hk, hv)."""
    decay = g.exp()
    hk = hk * decay.unsqueeze(-2) + k.unsqueeze(-1) * s.unsqueeze(-2)
    p = (q.unsqueeze(-2) @ hk).squeeze(-2).softmax(-1)
    hv = hv * decay.unsqueeze(-1) + s.unsqueeze(-1) * v.unsqueeze(-2)
    return (p.unsqueeze(-2) @ hv).squeeze(-2), hk, hv


def gsa_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: GSAState | None = None,
) -> tuple[torch.Tensor, GSAState]:
    """Recurrent form, one step at a time (T = 1 for decoding): returns (o (B, T, HQ, d_v), final state)."""
    _check_inputs(q, k, v, s, g, initial_state)
    groups = q.shape[2] // k.shape[2]
    out_dtype, dtype = q.dtype, _compute_dtype(q)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if initial_state is None:
        initial_state = _zero_state(q, k, v, s, dtype)
    hk, hv = _expand_state(initial_state, groups, dtype)
    q = q.to(dtype) * scale
    k, v, s, g = (x.to(dtype).repeat_interleave(groups, dim=2) if groups > 1 else x.to(dtype) for x in (k, v, s, g))
    outputs = []
    for q_t, k_t, v_t, s_t, g_t in zip(q.unbind(1), k.unbind(1), v.unbind(1), s.unbind(1), g.unbind(1)):
        o_t, hk, hv = _recurrent_step(q_t, k_t, v_t, s_t, g_t, hk, hv)
        outputs.append(o_t)
    return torch.stack(outputs, dim=1).to(out_dtype), _shrink_state((hk, hv), groups)


def gsa_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: GSAState | None = None,
) -> tuple[torch.Tensor, GSAState]:
    """The paper's slot-memory recurrence, written plainly (use float64 inputs for tight checks).

    Per key/value head: slot keys K~ (m, d_k) and slot values V~ (m, d_v) are forgotten by
    alpha_t = exp(g_t) and written with weights s_t; each query head of the group reads
    o_t = V~_t^T softmax(scale * K~_t q_t). Takes and returns the state in fla's layout.
    """
    _check_inputs(q, k, v, s, g, initial_state)
    batch, length, n_q_heads, d_k = q.shape
    n_heads = k.shape[2]
    groups = n_q_heads // n_heads
    dtype = _compute_dtype(q)
    scale = d_k**-0.5 if scale is None else scale
    if initial_state is None:
        initial_state = _zero_state(q, k, v, s, dtype)
    slot_keys = initial_state[0].to(dtype).transpose(-1, -2)  # (B, H, m, d_k)
    slot_values = initial_state[1].to(dtype)  # (B, H, m, d_v)
    q, k, v, s, g = (x.to(dtype) for x in (q, k, v, s, g))
    outputs = []
    for t in range(length):
        alpha = g[:, t].exp().unsqueeze(-1)  # (B, H, m, 1)
        write = s[:, t].unsqueeze(-1)
        slot_keys = alpha * slot_keys + write * k[:, t].unsqueeze(-2)
        slot_values = alpha * slot_values + write * v[:, t].unsqueeze(-2)
        heads = []
        for query_head in range(n_q_heads):
            head = query_head // groups
            scores = torch.einsum("bmd,bd->bm", slot_keys[:, head], q[:, t, query_head]) * scale
            heads.append(torch.einsum("bmd,bm->bd", slot_values[:, head], scores.softmax(-1)))
        outputs.append(torch.stack(heads, dim=1))
    return torch.stack(outputs, dim=1), (slot_keys.transpose(-1, -2).contiguous(), slot_values)


FLA_KERNELS = ("fla.ops.gsa", "chunk_gsa", "fused_recurrent_gsa")
"""fla's module and its chunked and one-step kernels, loaded by `load_fla` when used."""


def fla_available() -> bool:
    return load_fla(*FLA_KERNELS) is not None


def gsa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: GSAState | None = None,
    mode: str = "chunk",
    chunk_size: int = 16,
    use_fla: bool = True,
) -> tuple[torch.Tensor, GSAState]:
    """GSA over a segment (mode "chunk") or step by step (mode "recurrent"), with state in and out.

    On CUDA with fla importable (and `use_fla`), runs fla's `chunk_gsa` / `fused_recurrent_gsa`
    Triton kernels; otherwise the PyTorch forms above, in float32 with autocast disabled.
    """
    if mode not in ("chunk", "recurrent"):
        raise BackboneError(f"gsa: unknown mode {mode!r}; accepted: chunk, recurrent")
    kernels = load_fla(*FLA_KERNELS) if use_fla and q.is_cuda else None
    if kernels is None:
        with torch.autocast(q.device.type, enabled=False):
            if mode == "chunk":
                return gsa_chunked(q, k, v, s, g, scale, initial_state, chunk_size)
            return gsa_recurrent(q, k, v, s, g, scale, initial_state)
    _check_inputs(q, k, v, s, g, initial_state)
    groups = q.shape[2] // k.shape[2]
    if initial_state is None:
        initial_state = _zero_state(q, k, v, s, torch.float32)
    # Like fla's GSA layer: repeat key/value heads per query group before the kernel.
    k, v, s, g = (x.repeat_interleave(groups, dim=2) if groups > 1 else x for x in (k, v, s, g))
    hk, hv = _expand_state(initial_state, groups, torch.float32)
    kernel = kernels[0] if mode == "chunk" else kernels[1]
    o, (hk, hv) = kernel(
        q,
        k.to(q.dtype),
        v.to(q.dtype),
        s.to(q.dtype),
        g.float(),
        scale=q.shape[-1] ** -0.5 if scale is None else scale,
        initial_state=(hk.contiguous(), hv.contiguous()),
        output_final_state=True,
    )
    return o, _shrink_state((hk.float(), hv.float()), groups)
