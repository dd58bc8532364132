"""RWKV-7 ("Goose") state update: the generalized delta rule, in three forms plus fla dispatch.

Algorithm from Peng et al. 2025, "RWKV-7 'Goose' with Expressive Dynamic State Evolution"; tensor
layouts follow fla's generalized delta rule (`fla.ops.generalized_delta_rule`, fla-core 0.6.0) so
that its Triton kernels can be swapped in on CUDA. Written from the equations, not from fla's code.

Per head, with receptance r_t, log decay log_w_t <= 0, key k_t, in-context "removal" vector a_t
and "replacement" vector b_t (all d_k) and value v_t (d_v), RWKV-7 writes (state S is d_v x d_k)

    S_t = S_{t-1} (diag(w_t) + a_t b_t^T) + v_t k_t^T,        o_t = S_t r_t        (scale 1)

with a = -kk, b = kk * a_lr in the RWKV-7 layer. In fla's layout the state is H = S^T (d_k x d_v):

    H_t = (diag(w_t) + b_t a_t^T) H_{t-1} + k_t v_t^T,        o_t = H_t^T r_t

Layouts (fla's, batch then time then head):

    r, log_w, k, a, b (B, T, H, d_k)   v (B, T, H, d_v)   state (B, H, d_k, d_v)

The state is kept in float32 (float64 if given float64). `scale` multiplies r (RWKV-7 uses 1.0;
fla's generic dplr op defaults to d_k ** -0.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from architectures.errors import BackboneError
from architectures.ops import load_fla

# The chunked form factorises decays within a chunk as exp(G_t) * exp(-G_j) (G the cumulative log
# decay from the chunk's start); in float32 that needs chunk_size * max|log w| well below ~88.
# RWKV-7's layer bounds |log w| by exp(-0.5) ~ 0.61, so chunks up to 64 stay within this limit.
MAX_CHUNK_LOG_DECAY = 60.0


def _check_inputs(
    r: torch.Tensor,
    log_w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    initial_state: torch.Tensor | None,
) -> None:
    if r.dim() != 4:
        raise BackboneError(f"rwkv7: r has shape {tuple(r.shape)}; expected (B, T, H, d_k)")
    batch, length, n_heads, d_k = r.shape
    for name, tensor in (("log_w", log_w), ("k", k), ("a", a), ("b", b)):
        if tuple(tensor.shape) != tuple(r.shape):
            raise BackboneError(f"rwkv7: {name} has shape {tuple(tensor.shape)}; expected {tuple(r.shape)} like r")
    if v.dim() != 4 or tuple(v.shape[:3]) != (batch, length, n_heads):
        raise BackboneError(f"rwkv7: v has shape {tuple(v.shape)}; expected ({batch}, {length}, {n_heads}, d_v)")
    if initial_state is not None:
        want = (batch, n_heads, d_k, v.shape[-1])
        if tuple(initial_state.shape) != want:
            raise BackboneError(f"rwkv7: initial state has shape {tuple(initial_state.shape)}; expected {want}")


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _initial_state(r: torch.Tensor, v: torch.Tensor, state: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    if state is None:
        batch, _, n_heads, d_k = r.shape
        return torch.zeros(batch, n_heads, d_k, v.shape[-1], device=r.device, dtype=dtype)
    return state.to(dtype)


def rwkv7_chunked(
    r: torch.Tensor,
    log_w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    scale: float = 1.0,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked parallel (WY-style) form: returns (o (B, T, H, d_v), final state (B, H, d_k, d_v)).

    Inside a chunk, with G_t the cumulative log decay up to and including step t and H_0 the
    state at the chunk's start, H_t = diag(e^{G_t}) [H_0 + sum_{j<=t} e^{-G_j} (b_j u_j^T + k_j v_j^T)]
    where u_t = H_{t-1}^T a_t (the part of the state the delta rule removes). The u_t of a chunk
    solve one unit lower-triangular system, u = (I - A_ab)^{-1} (A_ak v + a~ H_0), with
    A_xy[t, j] = (x_t e^{G_{t-1}}) . (y_j e^{-G_j}) for j < t. Split as u = u_v + W H_0, every
    chunk's state update is H <- M H + E with M, E computed for all chunks at once; the only
    Python loop applies it (states stacked once, so backward stays linear in the chunk count),
    then outputs follow in parallel: o_t = r~_t^T H_0 + sum_{j<=t} (r~_t . b~_j) u_j + (r~_t . k~_j) v_j.
    """
    _check_inputs(r, log_w, k, v, a, b, initial_state)
    if chunk_size < 1:
        raise BackboneError(f"rwkv7: chunk_size must be a positive integer, got {chunk_size}")
    _, length, _, d_k = r.shape
    out_dtype, dtype = r.dtype, _compute_dtype(r)
    state = _initial_state(r, v, initial_state, dtype)
    r, log_w, k, v, a, b = (x.transpose(1, 2).to(dtype) for x in (r, log_w, k, v, a, b))  # (B, H, T, .)
    r = r * scale

    # Padded steps have log w = 0 (no decay), a = b = k = v = 0 (no write): the state is unchanged.
    pad = (-length) % chunk_size
    if pad:
        r, log_w, k, v, a, b = (F.pad(x, (0, 0, 0, pad)) for x in (r, log_w, k, v, a, b))
    n_chunks = (length + pad) // chunk_size
    r, log_w, k, v, a, b = (x.unflatten(2, (n_chunks, chunk_size)) for x in (r, log_w, k, v, a, b))  # (B,H,N,C,.)

    cum = log_w.cumsum(-2)  # G_t, inclusive
    with torch.no_grad():
        worst = -cum[..., -1, :].min().item() if cum.numel() else 0.0
    if worst > MAX_CHUNK_LOG_DECAY:
        raise BackboneError(
            f"rwkv7: total log decay {worst:.1f} within one chunk of {chunk_size} exceeds {MAX_CHUNK_LOG_DECAY}; "
            "use a smaller chunk_size (or the recurrent form)"
        )
    end = cum[..., -1:, :]
    grow, shrink = cum.exp(), (-cum).exp()
    r_dec = r * grow  # r~_t = r_t e^{G_t}
    a_dec = a * (cum - log_w).exp()  # a~_t = a_t e^{G_{t-1}}
    b_inv, k_inv = b * shrink, k * shrink  # y~_j = y_j e^{-G_j}
    to_end = (end - cum).exp()  # decay from step j to the chunk's end (<= 1)
    b_end, k_end = b * to_end, k * to_end

    # All four intra-chunk score matrices from one product: rows (a~, r~) against columns (b~, k~).
    eye = torch.eye(chunk_size, dtype=torch.bool, device=r.device)
    strict = torch.ones_like(eye).tril(-1)
    scores = torch.cat([a_dec, r_dec], dim=-2) @ torch.cat([b_inv, k_inv], dim=-2).transpose(-1, -2)
    mask = torch.cat([torch.cat([strict, strict], 1), torch.cat([strict | eye, strict | eye], 1)], 0)
    scores = scores.masked_fill(~mask, 0.0)
    a_b, a_k = scores[..., :chunk_size, :chunk_size], scores[..., :chunk_size, chunk_size:]
    r_bk = scores[..., chunk_size:, :]  # (r~ . b~, r~ . k~), inclusive

    # u = u_v + W H_0 from one triangular solve with both right-hand sides.
    d_v = v.shape[-1]
    solved = torch.linalg.solve_triangular(
        eye.to(dtype) - a_b, torch.cat([a_k @ v, a_dec], dim=-1), upper=False, unitriangular=True
    )
    u_v, u_w = solved[..., :d_v], solved[..., d_v:]  # (B,H,N,C,d_v), (B,H,N,C,d_k)
    from_b = b_end.transpose(-1, -2) @ solved  # (B,H,N,d_k,d_v+d_k)
    transition = torch.diag_embed(end.squeeze(-2).exp()) + from_b[..., d_v:]  # M (B,H,N,d_k,d_k)
    writes = from_b[..., :d_v] + k_end.transpose(-1, -2) @ v  # E (B,H,N,d_k,d_v)

    starts = []
    for chunk_transition, chunk_writes in zip(transition.unbind(2), writes.unbind(2)):
        starts.append(state)
        state = chunk_transition @ state + chunk_writes
    h0 = torch.stack(starts, dim=2)  # (B,H,N,d_k,d_v)

    u = u_v + u_w @ h0
    o = torch.cat([r_dec, r_bk], dim=-1) @ torch.cat([h0, u, v], dim=-2)  # r~ H_0 + (r~.b~) u + (r~.k~) v
    o = o.flatten(2, 3)[:, :, :length].transpose(1, 2).to(out_dtype)
    return o, state


def _recurrent_step(
    r: torch.Tensor,
    log_w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step on (B, H, d) inputs (r already scaled) and a (B, H, d_k, d_v) state: (o, state)."""
    removed = (a.unsqueeze(-2) @ state).squeeze(-2)  # a^T H  (B, H, d_v)
    state = log_w.exp().unsqueeze(-1) * state + b.unsqueeze(-1) * removed.unsqueeze(-2)
    state = state + k.unsqueeze(-1) * v.unsqueeze(-2)
    return (r.unsqueeze(-2) @ state).squeeze(-2), state


def rwkv7_recurrent(
    r: torch.Tensor,
    log_w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    scale: float = 1.0,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Recurrent form, one step at a time (T = 1 for decoding): returns (o (B, T, H, d_v), final state)."""
    _check_inputs(r, log_w, k, v, a, b, initial_state)
    out_dtype, dtype = r.dtype, _compute_dtype(r)
    state = _initial_state(r, v, initial_state, dtype)
    r = r.to(dtype) * scale
    log_w, k, v, a, b = (x.to(dtype) for x in (log_w, k, v, a, b))
    outputs = []
    for step in zip(r.unbind(1), log_w.unbind(1), k.unbind(1), v.unbind(1), a.unbind(1), b.unbind(1)):
        o_t, state = _recurrent_step(*step, state)
        outputs.append(o_t)
    return torch.stack(outputs, dim=1).to(out_dtype), state


def rwkv7_reference(
    r: torch.Tensor,
    log_w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    scale: float = 1.0,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's update written plainly in RWKV-LM's layout (S is d_v x d_k); use float64 for tight checks.

    S_t = S_{t-1} (diag(w_t) + a_t b_t^T) + v_t k_t^T, o_t = S_t (scale r_t). Takes and returns
    the state in fla's layout (S^T).
    """
    _check_inputs(r, log_w, k, v, a, b, initial_state)
    dtype = _compute_dtype(r)
    s = _initial_state(r, v, initial_state, dtype).transpose(-1, -2)  # (B, H, d_v, d_k)
    r, log_w, k, v, a, b = (x.to(dtype) for x in (r, log_w, k, v, a, b))
    outputs = []
    for t in range(r.shape[1]):
        transition = torch.diag_embed(log_w[:, t].exp()) + a[:, t].unsqueeze(-1) * b[:, t].unsqueeze(-2)
        s = s @ transition + v[:, t].unsqueeze(-1) * k[:, t].unsqueeze(-2)
        outputs.append(torch.einsum("bhvk,bhk->bhv", s, r[:, t] * scale))
    return torch.stack(outputs, dim=1), s.transpose(-1, -2).contiguous()


FLA_KERNELS = ("fla.ops.generalized_delta_rule", "chunk_dplr_delta_rule", "fused_recurrent_dplr_delta_rule")
"""fla's module and its chunked and one-step kernels, loaded by `load_fla` when used."""


def fla_available() -> bool:
    return load_fla(*FLA_KERNELS) is not None


def rwkv7(
    r: torch.Tensor,
    log_w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    scale: float = 1.0,
    initial_state: torch.Tensor | None = None,
    mode: str = "chunk",
    chunk_size: int = 16,
    use_fla: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The RWKV-7 update over a segment (mode "chunk") or step by step (mode "recurrent"), state in and out.

    On CUDA with fla importable (and `use_fla`), runs fla's `chunk_dplr_delta_rule` /
    `fused_recurrent_dplr_delta_rule` Triton kernels (what fla's `chunk_rwkv7` wraps) with gk =
    log_w; otherwise the PyTorch forms above, in float32 with autocast disabled.
    """
    if mode not in ("chunk", "recurrent"):
        raise BackboneError(f"rwkv7: unknown mode {mode!r}; accepted: chunk, recurrent")
    kernels = load_fla(*FLA_KERNELS) if use_fla and r.is_cuda else None
    if kernels is None:
        with torch.autocast(r.device.type, enabled=False):
            if mode == "chunk":
                return rwkv7_chunked(r, log_w, k, v, a, b, scale, initial_state, chunk_size)
            return rwkv7_recurrent(r, log_w, k, v, a, b, scale, initial_state)
    _check_inputs(r, log_w, k, v, a, b, initial_state)
    state = _initial_state(r, v, initial_state, torch.float32).contiguous()
    kernel = kernels[0] if mode == "chunk" else kernels[1]
    dtype = r.dtype
    o, state = kernel(
        q=r,
        k=k.to(dtype),
        v=v.to(dtype),
        a=a.to(dtype),
        b=b.to(dtype),
        gk=log_w.to(dtype),
        scale=scale,
        initial_state=state,
        output_final_state=True,
    )
    return o, state.float()
