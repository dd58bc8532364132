"""The SSD (state space duality) scan of Mamba2, in three forms, plus fla and mamba-ssm dispatch.

Algorithm from Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient
Algorithms Through Structured State Space Duality" (ICML 2024); tensor layouts follow
mamba-ssm's `mamba_chunk_scan_combined` so that the mixer reads like the reference. Written
from the equations, not from mamba-ssm's or fla's code.

Per head h with scalar A_h < 0, step sizes dt_t > 0, input x_t (P), and B_t, C_t (N) shared by
the heads of a group:

    h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T        (P, N)
    y_t = h_t C_t                                      (P)

(the skip term D x_t and the gate belong to the mixer). Layouts, batch then time then head:

    x (B, T, H, P)   dt (B, T, H)   A (H,)   B, C (B, T, G, N)   state (B, H, P, N)

with H a multiple of G (heads h*H/G .. (h+1)*H/G - 1 use group h). Everything is computed in
float32 (float64 if given float64); the state is returned in that dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from architectures.errors import BackboneError
from architectures.ops import load_fla


def _check_inputs(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, state: torch.Tensor | None
) -> None:
    if x.dim() != 4:
        raise BackboneError(f"ssd: x has shape {tuple(x.shape)}; expected (B, T, H, P)")
    batch, length, n_heads, head_dim = x.shape
    if tuple(dt.shape) != (batch, length, n_heads):
        raise BackboneError(f"ssd: dt has shape {tuple(dt.shape)}; expected {(batch, length, n_heads)}")
    if tuple(A.shape) != (n_heads,):
        raise BackboneError(f"ssd: A has shape {tuple(A.shape)}; expected ({n_heads},)")
    if B.dim() != 4 or tuple(B.shape[:2]) != (batch, length) or tuple(C.shape) != tuple(B.shape):
        raise BackboneError(
            f"ssd: B {tuple(B.shape)} and C {tuple(C.shape)} must both be (B, T, G, N) with B, T = {batch}, {length}"
        )
    if n_heads % B.shape[2]:
        raise BackboneError(f"ssd: {n_heads} heads is not a multiple of {B.shape[2]} groups")
    if state is not None and tuple(state.shape) != (batch, n_heads, head_dim, B.shape[-1]):
        raise BackboneError(
            f"ssd: initial state has shape {tuple(state.shape)}; expected {(batch, n_heads, head_dim, B.shape[-1])}"
        )


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _zero_state(x: torch.Tensor, B: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    batch, _, n_heads, head_dim = x.shape
    return torch.zeros(batch, n_heads, head_dim, B.shape[-1], device=x.device, dtype=dtype)


def segment_sums(a: torch.Tensor) -> torch.Tensor:
    """S[..., t, j] = a_{j+1} + ... + a_t for j <= t, -inf above the diagonal: (..., C) -> (..., C, C).

    Summed directly (a masked cumulative sum), not as a difference of running totals, so the
    decay weights exp(S) keep full relative precision however strong the forgetting.
    """
    size = a.shape[-1]
    strictly_lower = torch.ones(size, size, dtype=torch.bool, device=a.device).tril(-1)
    sums = a.unsqueeze(-1).expand(*a.shape, size).masked_fill(~strictly_lower, 0.0).cumsum(-2)
    causal = torch.ones(size, size, dtype=torch.bool, device=a.device).tril()
    return sums.masked_fill(~causal, float("-inf"))


def ssd_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSD's chunked algorithm: returns (y (B, T, H, P), final state (B, H, P, N)).

    Time is cut into chunks of `chunk_size` steps; with a_t = dt_t A and S the segment sums of
    a inside a chunk, each chunk's output is a masked "attention" over the chunk,
    y_t = sum_{j<=t} exp(S[t, j]) (C_t . B_j) dt_j x_j, plus its start state read through the
    decay so far, exp(a_1 + ... + a_t) h_0 C_t. The only Python loop passes states between
    chunks: h <- exp(a_1 + ... + a_C) h + sum_j exp(a_{j+1} + ... + a_C) dt_j x_j B_j^T.
    """
    _check_inputs(x, dt, A, B, C, initial_state)
    if chunk_size < 1:
        raise BackboneError(f"ssd: chunk_size={chunk_size}; accepted: a positive integer")
    batch, length, n_heads, head_dim = x.shape
    n_groups, d_state = B.shape[2], B.shape[3]
    out_dtype, dtype = x.dtype, _compute_dtype(x)
    state = _zero_state(x, B, dtype) if initial_state is None else initial_state.to(dtype)

    # Pad time to whole chunks: padded steps have dt = 0, so no decay and no write.
    pad = (-length) % chunk_size
    n_chunks, heads_per_group = (length + pad) // chunk_size, n_heads // n_groups
    x_dt = F.pad(x.to(dtype) * dt.to(dtype).unsqueeze(-1), (0, 0, 0, 0, 0, pad))
    a = F.pad(dt.to(dtype) * A.to(dtype), (0, 0, 0, pad))  # log decay per step, <= 0
    # Group-major B, C (B, G, Nc, C, N); head-major x (B, G, h, Nc, C, P) and decays (B, G, h, Nc, C).
    B_, C_ = (
        F.pad(m.to(dtype), (0, 0, 0, 0, 0, pad))
        .reshape(batch, n_chunks, chunk_size, n_groups, d_state)
        .permute(0, 3, 1, 2, 4)
        for m in (B, C)
    )
    x_dt = x_dt.reshape(batch, n_chunks, chunk_size, n_groups, heads_per_group, head_dim).permute(0, 3, 4, 1, 2, 5)
    a = a.reshape(batch, n_chunks, chunk_size, n_groups, heads_per_group).permute(0, 3, 4, 1, 2)

    cum = a.cumsum(-1)  # log decay from the chunk's start to each step
    sums = segment_sums(a)  # (B, G, h, Nc, C, C)
    decay_to_end = sums[..., -1, :].exp()  # exp(a_{j+1} + ... + a_C), summed directly

    # Within chunks: masked attention with weights exp(S[t, j]) (C_t . B_j), per head.
    scores = (C_ @ B_.transpose(-1, -2)).unsqueeze(2) * sums.exp()
    y_intra = scores @ x_dt  # (B, G, h, Nc, C, P)

    # Between chunks, with the heads of a group stacked as rows (P -> h * P) so that each chunk's
    # state writes and reads are single larger matmuls: writes (B, G, Nc, h, P, N).
    weighted = (x_dt * decay_to_end.unsqueeze(-1)).permute(0, 1, 3, 2, 5, 4).flatten(3, 4)  # (B,G,Nc,hP,C)
    writes = (weighted @ B_).unflatten(3, (heads_per_group, head_dim))
    chunk_decay = cum[..., -1].exp().transpose(2, 3)[..., None, None]  # (B, G, Nc, h, 1, 1)
    state = state.unflatten(1, (n_groups, heads_per_group))
    starts, state = _scan_states(state, chunk_decay, writes)  # starts (B, G, Nc, h, P, N)
    y = (C_ @ starts.flatten(3, 4).transpose(-1, -2)).unflatten(-1, (heads_per_group, head_dim))  # (B,G,Nc,C,h,P)
    y = y * cum.exp().permute(0, 1, 3, 4, 2).unsqueeze(-1) + y_intra.permute(0, 1, 3, 4, 2, 5)

    y = y.permute(0, 2, 3, 1, 4, 5).reshape(batch, n_chunks * chunk_size, n_heads, head_dim)[:, :length]
    return y.to(out_dtype), state.flatten(1, 2)


def _scan_states(state: torch.Tensor, decay: torch.Tensor, writes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inter-chunk recurrence: state (B, G, h, P, N) before the first chunk; decay (B, G, Nc, h, 1, 1)
    and writes (B, G, Nc, h, P, N) per chunk. Returns the states at every chunk start
    (B, G, Nc, h, P, N) and the final state; slices come from one `unbind` and are stacked once,
    so backward stays linear in the number of chunks."""
    starts = []
    for chunk_decay, chunk_writes in zip(decay.unbind(2), writes.unbind(2)):
        starts.append(state)
        state = state * chunk_decay + chunk_writes
    return torch.stack(starts, dim=2), state


def _expand_groups(m: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, G, N) -> (B, T, H, N): each group repeated for its heads."""
    groups = m.shape[2]
    return m.repeat_interleave(n_heads // groups, dim=2) if groups != n_heads else m


def ssd_recurrent(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Recurrent form, one step at a time (T = 1 for decoding): returns (y (B, T, H, P), final state)."""
    _check_inputs(x, dt, A, B, C, initial_state)
    n_heads = x.shape[2]
    out_dtype, dtype = x.dtype, _compute_dtype(x)
    state = _zero_state(x, B, dtype) if initial_state is None else initial_state.to(dtype)
    dt = dt.to(dtype)
    decay = (dt * A.to(dtype)).exp()  # (B, T, H)
    x_dt = x.to(dtype) * dt.unsqueeze(-1)
    B_, C_ = (_expand_groups(m.to(dtype), n_heads) for m in (B, C))
    outputs = []
    for decay_t, x_t, b_t, c_t in zip(decay.unbind(1), x_dt.unbind(1), B_.unbind(1), C_.unbind(1)):
        state = torch.addcmul(state * decay_t[..., None, None], x_t.unsqueeze(-1), b_t.unsqueeze(-2))
        outputs.append((state @ c_t.unsqueeze(-1)).squeeze(-1))
    return torch.stack(outputs, dim=1).to(out_dtype), state


def ssd_reference(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The selective SSM written plainly, head by head (use float64 inputs for tight checks):
    discretise A_bar = exp(dt A), B_bar = dt B, then h_t = A_bar h_{t-1} + x_t B_bar^T, y_t = h_t C_t."""
    _check_inputs(x, dt, A, B, C, initial_state)
    batch, length, n_heads, _ = x.shape
    heads_per_group = n_heads // B.shape[2]
    dtype = _compute_dtype(x)
    state = _zero_state(x, B, dtype) if initial_state is None else initial_state.to(dtype)
    x, dt, A, B, C = (m.to(dtype) for m in (x, dt, A, B, C))
    heads = []
    for head in range(n_heads):
        group = head // heads_per_group
        h = state[:, head]
        outputs = []
        for t in range(length):
            a_bar = torch.exp(dt[:, t, head] * A[head])[:, None, None]
            b_bar = dt[:, t, head, None] * B[:, t, group]
            h = a_bar * h + torch.einsum("bp,bn->bpn", x[:, t, head], b_bar)
            outputs.append(torch.einsum("bpn,bn->bp", h, C[:, t, group]))
        heads.append((torch.stack(outputs, dim=1), h))
    y = torch.stack([y_head for y_head, _ in heads], dim=2)
    return y, torch.stack([h for _, h in heads], dim=1)


FLA_KERNELS = ("fla.ops.simple_gla", "chunk_simple_gla", "fused_recurrent_simple_gla")
"""fla's module and its chunked and one-step kernels, loaded by `load_fla` when used."""
MAMBA_SSM_KERNEL = ("mamba_ssm.ops.triton.ssd_combined", "mamba_chunk_scan_combined")
"""mamba-ssm's module and its chunked SSD kernel (forward and backward), the same in releases 2.0 to 2.3."""
MAMBA_SSM_CHUNK = 256
"""Chunk size given to mamba-ssm's kernel: its `Mamba2` layer's default (the output does not depend on it)."""
KERNELS = ("torch", "fla", "mamba_ssm")
"""What runs the scan on CUDA tensors: the PyTorch forms, fla's kernels, or mamba-ssm's."""


def fla_available() -> bool:
    return load_fla(*FLA_KERNELS) is not None


def mamba_ssm_available() -> bool:
    """Whether mamba-ssm's kernel can run here (a CUDA GPU is visible and it imports); never imports it otherwise."""
    return torch.cuda.is_available() and load_fla(*MAMBA_SSM_KERNEL) is not None


def mamba_ssm_scan() -> Callable:
    """mamba-ssm's `mamba_chunk_scan_combined`, or a one-line BackboneError saying why it cannot run here."""
    if not torch.cuda.is_available():
        raise BackboneError(
            f"mamba2: kernel='mamba_ssm' needs a CUDA GPU; none is visible here (torch {torch.__version__}); "
            "use kernel='fla' or 'torch'"
        )
    loaded = load_fla(*MAMBA_SSM_KERNEL)
    if loaded is None:
        raise BackboneError(
            "mamba2: kernel='mamba_ssm' needs mamba-ssm, which does not import here "
            "(pip install --no-build-isolation -e '.[mamba]'; its build needs nvcc); use kernel='fla' or 'torch'"
        )
    return loaded[0]


def resolve_kernel(kernel: str, use_fla: bool = True) -> str:
    """The scan `kernel` names, checked: "torch", "fla" ("torch" when `use_fla` is False, the switch every
    fla backbone has) or "mamba_ssm" (a BackboneError where it cannot run: no CUDA, or not installed)."""
    if kernel not in KERNELS:
        raise BackboneError(f"mamba2: kernel={kernel!r}; accepted: {', '.join(KERNELS)}")
    if kernel == "mamba_ssm":
        mamba_ssm_scan()
    return "torch" if kernel == "fla" and not use_fla else kernel


def ssd_mamba_ssm(
    scan: Callable,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSD over a segment by mamba-ssm's `scan` (`mamba_chunk_scan_combined`): the same layouts and
    recurrence as ours, given the step sizes already through softplus (dt_softplus=False, no dt_bias),
    without D and z (the mixer adds the skip and the gate), B and C in x's dtype (bf16 under autocast).
    The carried state is float32 both ways: the kernel reads `initial_states` as float32 and returns
    its final states in float32 (every 2.x release); inside the segment its per-chunk states have
    x's dtype, mamba-ssm's own training precision."""
    _check_inputs(x, dt, A, B, C, initial_state)
    with torch.autocast(x.device.type, enabled=False):
        y, state = scan(
            x,
            dt.float(),
            A.float(),
            B.to(x.dtype),
            C.to(x.dtype),
            MAMBA_SSM_CHUNK,
            initial_states=None if initial_state is None else initial_state.float(),
            return_final_states=True,
        )
    return y, state.float()  # float32 already: the state contract, whatever a future release does


def ssd(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    mode: str = "chunk",
    chunk_size: int = 64,
    use_fla: bool = True,
    kernel: str = "fla",
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSD over a segment (mode "chunk") or step by step (mode "recurrent"), with state in and out.

    `kernel` chooses what runs on CUDA tensors (`resolve_kernel`); CPU tensors always take the
    PyTorch forms. "fla" (when fla imports): fla's scalar-decay gated linear attention kernels
    (`chunk_simple_gla` / `fused_recurrent_simple_gla`), which compute the same recurrence with
    q = C, k = B, v = dt x, log decay g = dt A and scale 1, state (K, V) = the transpose of ours.
    "mamba_ssm": mamba-ssm's SSD kernel for segments (`ssd_mamba_ssm`) and the PyTorch recurrent
    form for single steps (mamba-ssm has no functional one-step kernel). Otherwise the PyTorch forms
    above, in float32 with autocast disabled.
    """
    if mode not in ("chunk", "recurrent"):
        raise BackboneError(f"ssd: unknown mode {mode!r}; accepted: chunk, recurrent")
    kernel = resolve_kernel(kernel, use_fla)
    if kernel == "mamba_ssm" and x.is_cuda and mode == "chunk":
        return ssd_mamba_ssm(mamba_ssm_scan(), x, dt, A, B, C, initial_state)
    kernels = load_fla(*FLA_KERNELS) if kernel == "fla" and x.is_cuda else None
    if kernels is None:
        with torch.autocast(x.device.type, enabled=False):
            if mode == "chunk":
                return ssd_chunked(x, dt, A, B, C, initial_state, chunk_size)
            return ssd_recurrent(x, dt, A, B, C, initial_state)
    _check_inputs(x, dt, A, B, C, initial_state)
    n_heads = x.shape[2]
    if initial_state is None:
        initial_state = _zero_state(x, B, torch.float32)
    q, k = (_expand_groups(m, n_heads).to(x.dtype) for m in (C, B))
    v = x * dt.unsqueeze(-1).to(x.dtype)
    g = dt.float() * A.float()
    fla_kernel = kernels[0] if mode == "chunk" else kernels[1]
    y, state = fla_kernel(
        q.contiguous(),
        k.contiguous(),
        v.contiguous(),
        g.contiguous(),
        scale=1.0,
        initial_state=initial_state.float().transpose(-1, -2).contiguous(),
        output_final_state=True,
    )
    return y, state.float().transpose(-1, -2)
