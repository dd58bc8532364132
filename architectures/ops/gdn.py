"""The gated delta rule (Gated DeltaNet's core op), in three forms plus fla dispatch.

Algorithm from Yang, Kautz and Hatamizadeh 2024/2025, "Gated Delta Networks: Improving Mamba2
with Delta Rule" (ICLR 2025); the chunked form uses the WY / UT-transform representation of
Yang et al. 2024, "Parallelizing Linear Transformers with the Delta Rule over Sequence Length".
Layouts and conventions follow fla's `fla.ops.gated_delta_rule` (fla-core 0.6.0) so that the
Triton kernels can be swapped in on CUDA. Written from the equations, not from fla's code.

Per head, with query q_t and key k_t (d_k, L2-normalised by the caller), value v_t (d_v),
write strength beta_t in (0, 1] (or (0, 2] with negative eigenvalues) and log decay g_t <= 0,
the state S is a (d_k, d_v) matrix (fla's layout: keys on the rows) and

    S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T
    o_t = scale * S_t^T q_t,            scale = d_k ** -0.5 by default

(the paper writes the transpose, S_t = S_{t-1} exp(g_t) (I - beta_t k_t k_t^T) + beta_t v_t k_t^T
with S (d_v, d_k) and o_t = S_t q_t). Layouts (batch, time, head):

    q, k (B, T, H, d_k)   v (B, T, H, d_v)   g, beta (B, T, H)
    state S (B, H, d_k, d_v), kept in float32 (float64 if given float64)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from architectures.errors import BackboneError
from architectures.ops import load_fla


def _check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor | None,
) -> None:
    if q.dim() != 4:
        raise BackboneError(f"gdn: q has shape {tuple(q.shape)}; expected (B, T, H, d_k)")
    batch, length, n_heads, d_k = q.shape
    d_v = v.shape[-1] if v.dim() == 4 else -1
    expected = {
        "k": (k, (batch, length, n_heads, d_k)),
        "v": (v, (batch, length, n_heads, d_v)),
        "g": (g, (batch, length, n_heads)),
        "beta": (beta, (batch, length, n_heads)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise BackboneError(
                f"gdn: {name} has shape {tuple(tensor.shape)}; expected {shape} to match q {tuple(q.shape)}"
            )
    if initial_state is not None and tuple(initial_state.shape) != (batch, n_heads, d_k, d_v):
        raise BackboneError(
            f"gdn: initial state has shape {tuple(initial_state.shape)}; expected {(batch, n_heads, d_k, d_v)}"
        )


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _zero_state(k: torch.Tensor, v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    batch, _, n_heads, d_k = k.shape
    return torch.zeros(batch, n_heads, d_k, v.shape[-1], device=k.device, dtype=dtype)


def gated_delta_rule_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked parallel form: returns (o (B, T, H, d_v), final state (B, H, d_k, d_v)).

    Inside a chunk of C steps starting from state S_0, let b_t = g_1 + ... + g_t. Unrolling the
    recurrence gives S_t = exp(b_t) S_0 + sum_{j<=t} exp(b_t - b_j) k_j u_j^T, where the
    "new values" u solve the unit lower-triangular system (UT transform)

        (I + A) U = diag(beta) V - diag(beta exp(b)) K S_0,
        A[t, j] = beta_t exp(b_t - b_j) k_t . k_j   for j < t (0 elsewhere),

    so U = U_v - W S_0 with U_v = (I + A)^-1 diag(beta) V and W = (I + A)^-1 diag(beta exp(b)) K
    (the WY representation), both computed for every chunk at once (see `unit_lower_inverse`).
    Only S_0 is sequential: the loop over chunks forms U = U_v - W S_0 and
    S_C = exp(b_C) S_0 + sum_j exp(b_C - b_j) k_j u_j^T. The outputs are then, for all chunks at once,
    o_t = scale (exp(b_t) S_0^T q_t + sum_{j<=t} exp(b_t - b_j) (q_t . k_j) u_j).
    Every exponent used is <= 0, so nothing overflows.
    """
    _check_inputs(q, k, v, g, beta, initial_state)
    if chunk_size < 1:
        raise BackboneError(f"gdn: chunk_size must be a positive integer, got {chunk_size}")
    batch, length, n_heads, d_k = q.shape
    out_dtype, dtype = q.dtype, _compute_dtype(q)
    scale = d_k**-0.5 if scale is None else scale
    state = _zero_state(k, v, dtype) if initial_state is None else initial_state.to(dtype)

    # (B, T, H, D) -> (B, H, T, D); g and beta get a trailing unit dimension.
    q, k, v = (x.transpose(1, 2).to(dtype) for x in (q, k, v))
    g, beta = (x.transpose(1, 2).to(dtype).unsqueeze(-1) for x in (g, beta))
    # Pad time to whole chunks: padded steps have k = 0, beta = 0 (no write) and g = 0 (no
    # decay), so they leave the state unchanged; their outputs are dropped.
    pad = (-length) % chunk_size
    if pad:
        q, k, v, g, beta = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v, g, beta))
    n_chunks = (length + pad) // chunk_size
    q, k, v, g, beta = (x.unflatten(2, (n_chunks, chunk_size)) for x in (q, k, v, g, beta))  # (B, H, N, C, .)

    b = g.cumsum(-2)  # (B, H, N, C, 1)
    b_end = b[..., -1:, :]
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    log_pair = (b - b.transpose(-1, -2)).masked_fill(~causal, float("-inf"))
    pair_decay = log_pair.exp()  # exp(b_t - b_j) for j <= t, else 0

    k_beta = k * beta
    strict = ((k_beta @ k.transpose(-1, -2)) * pair_decay).tril(-1)
    inverse = unit_lower_inverse(strict)
    u_v, w = inverse @ (v * beta), inverse @ (k_beta * b.exp())

    k_to_end = k * (b_end - b).exp()  # keys as seen at the chunk's end
    chunk_decay = b_end.exp()  # (B, H, N, 1, 1)
    starts, new_values = [], []
    for u_n, w_n, k_n, decay_n in zip(u_v.unbind(2), w.unbind(2), k_to_end.unbind(2), chunk_decay.unbind(2)):
        starts.append(state)
        u_n = u_n - w_n @ state
        new_values.append(u_n)
        state = state * decay_n + k_n.transpose(-1, -2) @ u_n
    starts_t, u = torch.stack(starts, dim=2), torch.stack(new_values, dim=2)

    q = q * scale
    o = (q * b.exp()) @ starts_t + ((q @ k.transpose(-1, -2)) * pair_decay) @ u
    o = o.flatten(2, 3)[:, :, :length].transpose(1, 2).to(out_dtype)
    return o, state


def unit_lower_inverse(strict: torch.Tensor) -> torch.Tensor:
    """(I + L)^-1 for strictly lower-triangular L (..., C, C): `_unit_lower_inverse_blocks` forward,
    with the closed-form backward of `_UnitLowerInverse`."""
    return _UnitLowerInverse.apply(strict)


class _UnitLowerInverse(torch.autograd.Function):
    """X = (I + L)^-1 with the backward from d(M^-1) = -M^-1 dM M^-1: dL = -(X^T dX X^T) on the
    strictly lower triangle (the only entries the forward reads). Autograd through the block
    recursion instead kept its whole graph and allocated a full-size zero tensor per level in the
    backward."""

    @staticmethod
    def forward(ctx, strict: torch.Tensor) -> torch.Tensor:
        inverse = _unit_lower_inverse_blocks(strict)
        ctx.save_for_backward(inverse)
        return inverse

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (inverse,) = ctx.saved_tensors
        transposed = inverse.transpose(-1, -2)
        return -(transposed @ grad @ transposed).tril(-1)


def _unit_lower_inverse_blocks(strict: torch.Tensor) -> torch.Tensor:
    """(I + L)^-1 for strictly lower-triangular L (..., C, C), by recursive 2 x 2 block inversion.

    Bottom-up over block sizes s = 1, 2, 4, ...: the inverse of [[A, 0], [X, D]] is
    [[A^-1, 0], [-D^-1 X A^-1, D^-1]], so each level is two batched matmuls over all diagonal
    blocks at once. This is triangular inversion as matmuls (with two threads on CPU it beat
    batched LAPACK solves of the same small systems) and it never forms powers of L, whose
    entries can be huge.
    C is padded to a power of two with zeros (identity rows), which the inverse leaves apart.
    """
    size = strict.shape[-1]
    padded = 1 << max(size - 1, 0).bit_length()
    if padded != size:
        strict = F.pad(strict, (0, padded - size, 0, padded - size))
    blocks = torch.ones(*strict.shape[:-2], padded, 1, 1, dtype=strict.dtype, device=strict.device)
    half = 1
    while half < padded:
        n_blocks = padded // (2 * half)
        diagonal = strict.unflatten(-2, (n_blocks, 2 * half)).unflatten(-1, (n_blocks, 2 * half))
        diagonal = torch.diagonal(diagonal, dim1=-4, dim2=-2).movedim(-1, -3)  # (..., n_blocks, 2h, 2h)
        upper_inv, lower_inv = blocks[..., 0::2, :, :], blocks[..., 1::2, :, :]
        corner = -(lower_inv @ diagonal[..., half:, :half] @ upper_inv)
        top = torch.cat([upper_inv, torch.zeros_like(upper_inv)], dim=-1)
        blocks = torch.cat([top, torch.cat([corner, lower_inv], dim=-1)], dim=-2)
        half *= 2
    return blocks[..., 0, :size, :size]


def _recurrent_step(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step on (B, H, D) q (already scaled), k, v, (B, H) g, beta and a (B, H, d_k, d_v) state."""
    state = state * g.exp()[..., None, None]
    remembered = (k.unsqueeze(-2) @ state).squeeze(-2)  # S^T k, (B, H, d_v)
    delta = beta.unsqueeze(-1) * (v - remembered)
    state = state + k.unsqueeze(-1) * delta.unsqueeze(-2)
    return (q.unsqueeze(-2) @ state).squeeze(-2), state


def gated_delta_rule_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Recurrent form, one step at a time (T = 1 for decoding): returns (o (B, T, H, d_v), final state)."""
    _check_inputs(q, k, v, g, beta, initial_state)
    out_dtype, dtype = q.dtype, _compute_dtype(q)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    state = _zero_state(k, v, dtype) if initial_state is None else initial_state.to(dtype)
    q = q.to(dtype) * scale
    k, v, g, beta = (x.to(dtype) for x in (k, v, g, beta))
    outputs = []
    for q_t, k_t, v_t, g_t, beta_t in zip(q.unbind(1), k.unbind(1), v.unbind(1), g.unbind(1), beta.unbind(1)):
        o_t, state = _recurrent_step(q_t, k_t, v_t, g_t, beta_t, state)
        outputs.append(o_t)
    return torch.stack(outputs, dim=1).to(out_dtype), state


def gated_delta_rule_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's recurrence written literally, with explicit (I - beta k k^T) matrices
    (use float64 inputs for tight checks). Takes and returns the state in fla's layout."""
    _check_inputs(q, k, v, g, beta, initial_state)
    batch, length, n_heads, d_k = q.shape
    dtype = _compute_dtype(q)
    scale = d_k**-0.5 if scale is None else scale
    state = _zero_state(k, v, dtype) if initial_state is None else initial_state.to(dtype)
    paper_state = state.transpose(-1, -2)  # the paper's S: (d_v, d_k)
    q, k, v, g, beta = (x.to(dtype) for x in (q, k, v, g, beta))
    identity = torch.eye(d_k, dtype=dtype, device=q.device)
    outputs = []
    for t in range(length):
        k_t, v_t = k[:, t].unsqueeze(-1), v[:, t].unsqueeze(-1)  # (B, H, d, 1)
        beta_t = beta[:, t, :, None, None]
        transition = g[:, t, :, None, None].exp() * (identity - beta_t * k_t @ k_t.transpose(-1, -2))
        paper_state = paper_state @ transition + beta_t * v_t @ k_t.transpose(-1, -2)
        outputs.append(scale * (paper_state @ q[:, t].unsqueeze(-1)).squeeze(-1))
    return torch.stack(outputs, dim=1), paper_state.transpose(-1, -2).contiguous()


FLA_KERNELS = ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule")
"""fla's module and its chunked and one-step kernels, loaded by `load_fla` when used."""


def fla_available() -> bool:
    return load_fla(*FLA_KERNELS) is not None


def gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    mode: str = "chunk",
    chunk_size: int = 64,
    use_fla: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gated delta rule over a segment (mode "chunk") or step by step (mode "recurrent").

    On CUDA with fla importable (and `use_fla`), runs fla's `chunk_gated_delta_rule` /
    `fused_recurrent_gated_delta_rule` Triton kernels (q and k must already be L2-normalised;
    fla's in-kernel normalisation is not used); otherwise the PyTorch forms above, in float32
    with autocast disabled. The state is returned in float32.
    """
    if mode not in ("chunk", "recurrent"):
        raise BackboneError(f"gdn: unknown mode {mode!r}; accepted: chunk, recurrent")
    kernels = load_fla(*FLA_KERNELS) if use_fla and q.is_cuda else None
    if kernels is None:
        with torch.autocast(q.device.type, enabled=False):
            if mode == "chunk":
                return gated_delta_rule_chunked(q, k, v, g, beta, scale, initial_state, chunk_size)
            return gated_delta_rule_recurrent(q, k, v, g, beta, scale, initial_state)
    _check_inputs(q, k, v, g, beta, initial_state)
    state = _zero_state(k, v, torch.float32) if initial_state is None else initial_state.float()
    kernel = kernels[0] if mode == "chunk" else kernels[1]
    o, state = kernel(
        q=q,
        k=k.to(q.dtype),
        v=v.to(q.dtype),
        g=g.float(),
        beta=beta.to(q.dtype),
        scale=q.shape[-1] ** -0.5 if scale is None else scale,
        initial_state=state.contiguous(),
        output_final_state=True,
    )
    return o, state.float()
