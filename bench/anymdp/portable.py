"""Portable arithmetic: the same bits on every CPU, BLAS, thread count and SIMD level.

Everything that defines the benchmark (tasks, labels, oracle and random returns, data, baseline
rollouts) computes with this module instead of BLAS (`@`, `einsum`, `linalg`), NumPy's
CPU-dispatched transcendental functions (`np.exp`, `np.log`, `np.sin`, `np.cos`) and NumPy's
random variates other than uniforms. It only uses operations whose result IEEE 754 fixes to the
bit and whose order this code fixes:

- elementwise `+ - * /` and `sqrt` (correctly rounded; separate NumPy calls cannot be fused into
  an FMA), comparisons, `rint`, `frexp` and `ldexp` (exact);
- sums by `np.sum` / `np.cumsum` over a given axis: their order depends only on the array's shape
  and memory layout (NumPy's pairwise summation in blocks of 8 along a contiguous axis, row by row
  along another), never on the CPU or on BLAS;
- `exp`, `log` and `sin_cos` as fixed polynomials of range-reduced arguments (Cody and Waite's
  reduction with fdlibm's split constants, Taylor series evaluated by Horner's rule): accurate to
  about 1e-16 relative, and the same bits everywhere because only the operations above are used;
- random draws from `numpy.random.Generator.random` (53 random bits times 2**-53: exact) and
  `integers`/`permutation` (integer arithmetic), turned into uniform, normal (Box-Muller) and
  exponential (inversion) variates here.
"""

from __future__ import annotations

import math

import numpy as np

from bench.errors import BenchError

LN2 = 6.93147180559945286227e-01
# ln 2 and pi / 2 split so that k * HI is exact for the |k| we meet (fdlibm's constants)
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
INV_LN2 = 1.44269504088896338700e00
PIO2_1, PIO2_2, PIO2_3 = 1.57079632673412561417e00, 6.07710050630396597660e-11, 2.02226624871116645580e-21
TWO_OVER_PI = 6.36619772367581382433e-01
TWO_PI = 6.28318530717958623200e00
SQRT_HALF = 7.07106781186547572737e-01
EXP_MIN, EXP_MAX = -708.0, 709.0
"""exp(x) is 0 below EXP_MIN (no subnormal results) and inf above EXP_MAX."""
WHOLE_ROWS_UP_TO = 24
"""`solve_dominant` updates whole rows for n up to this, only the columns still needed beyond."""
DOT_CHUNK = 1 << 21
"""Elements of a product `dot` forms at once (16 MiB of float64)."""
SIN_COS_MAX = 2.0**20
"""|x| up to which the three-part reduction keeps sin and cos accurate (much beyond any use here)."""

_EXP_TERMS = [1.0 / math.factorial(n) for n in range(14)]  # |r| <= ln2 / 2: error < 1e-17
_LOG_TERMS = [1.0 / (2 * k + 1) for k in range(12)]  # atanh series, |s| <= 0.1716: error < 1e-18
_SIN_TERMS = [(-1.0) ** k / math.factorial(2 * k + 1) for k in range(10)]  # |r| <= pi / 4
_COS_TERMS = [(-1.0) ** k / math.factorial(2 * k) for k in range(10)]


def _horner(terms: list[float], z: np.ndarray) -> np.ndarray:
    """sum_k terms[k] z^k by Horner's rule (len(terms) >= 2)."""
    out = z * terms[-1] + terms[-2]
    for c in reversed(terms[:-2]):
        out *= z
        out += c
    return out


def _float_array(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def exp(x) -> np.ndarray:
    """e**x elementwise; 0 below EXP_MIN, inf above EXP_MAX, nan for nan."""
    x = _float_array(x)
    clipped = np.clip(np.where(np.isnan(x), 0.0, x), EXP_MIN, EXP_MAX)
    k = np.rint(clipped * INV_LN2)
    r = (clipped - k * LN2_HI) - k * LN2_LO
    out = np.ldexp(_horner(_EXP_TERMS, r), k.astype(np.int64))
    out = np.where(x < EXP_MIN, 0.0, np.where(x > EXP_MAX, np.inf, out))
    return np.where(np.isnan(x), np.nan, out)


def log(x) -> np.ndarray:
    """Natural logarithm elementwise; -inf at 0, nan below 0, inf at inf."""
    x = _float_array(x)
    positive = (x > 0) & np.isfinite(x)
    m, e = np.frexp(np.where(positive, x, 1.0))  # x = m * 2**e, m in [0.5, 1)
    low = m < SQRT_HALF
    m = np.where(low, m * 2.0, m)
    e = (e - low).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)  # log m = 2 atanh(s)
    out = e * LN2_HI + (e * LN2_LO + 2.0 * s * _horner(_LOG_TERMS, s * s))
    out = np.where(x == 0, -np.inf, np.where(x == np.inf, np.inf, out))
    return np.where((x < 0) | np.isnan(x), np.nan, out)


def _reduce_quarter(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x = k pi / 2 + r with |r| <= pi / 4 (about): (r, k mod 4)."""
    if np.any(np.abs(x) > SIN_COS_MAX):
        raise BenchError(f"portable sin/cos accept |x| <= {SIN_COS_MAX:g}; got {np.abs(x).max():g}")
    k = np.rint(x * TWO_OVER_PI)
    r = ((x - k * PIO2_1) - k * PIO2_2) - k * PIO2_3
    return r, np.mod(k, 4.0).astype(np.int64)


def _sin_cos_reduced(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = r * r
    return r * _horner(_SIN_TERMS, z), _horner(_COS_TERMS, z)


def sin_cos(x) -> tuple[np.ndarray, np.ndarray]:
    """(sin(x), cos(x)) elementwise for |x| <= SIN_COS_MAX."""
    r, quadrant = _reduce_quarter(_float_array(x))
    s, c = _sin_cos_reduced(r)
    return np.choose(quadrant, [s, c, -s, -c]), np.choose(quadrant, [c, -s, -c, s])


def cos(x) -> np.ndarray:
    """cos(x) elementwise for |x| <= SIN_COS_MAX."""
    return sin_cos(x)[1]


def dot(a, b, axis: int = -1) -> np.ndarray:
    """sum(a * b) along `axis` (a and b broadcast): the portable replacement of `@` and `einsum`.

    Large products are formed DOT_CHUNK elements at a time along the first axis (when `axis` is
    another), which bounds the temporary and changes no bit: every sum runs over the same terms.
    """
    a, b = np.asarray(a), np.asarray(b)
    shape = np.broadcast_shapes(a.shape, b.shape)
    if len(shape) < 2 or axis % len(shape) == 0 or math.prod(shape) <= DOT_CHUNK:
        return np.multiply(a, b, dtype=np.float64).sum(axis=axis)
    a, b = np.broadcast_to(a, shape), np.broadcast_to(b, shape)
    rows = max(1, DOT_CHUNK * shape[0] // math.prod(shape))
    chunks = (
        np.multiply(a[i : i + rows], b[i : i + rows], dtype=np.float64).sum(axis=axis) for i in range(0, shape[0], rows)
    )
    return np.concatenate(list(chunks))


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., n, k) x (..., k, m) -> (..., n, m) by `dot` (O(n k m) memory: for small tables)."""
    return dot(a[..., :, None, :], np.swapaxes(b, -1, -2)[..., None, :, :])


def solve_dominant(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with a x = b for (..., n, n) matrices strictly diagonally dominant by rows, b (..., n).

    Gauss-Jordan elimination without pivoting, which such matrices do not need (every Schur
    complement stays row-diagonally dominant): n steps, each a few whole-array operations in a
    fixed order. The benchmark's systems are all I - gamma P with gamma < 1 and P substochastic.
    """
    a, b = np.asarray(a), np.asarray(b)
    n = a.shape[-1]
    if a.shape[-2:] != (n, n) or b.shape != a.shape[:-1]:
        raise BenchError(f"solve_dominant needs a (..., n, n) and b (..., n); got {a.shape} and {b.shape}")
    m = np.empty(b.shape + (n + 1,))  # the augmented matrix [a | b]
    m[..., :n], m[..., n] = a, b
    for k in range(n):
        # columns left of k hold exact zeros off the diagonal (x - x * (x / x) == 0): large systems
        # skip them, small ones save the slicing (the same bits either way)
        cols = slice(k, None) if n > WHOLE_ROWS_UP_TO else slice(None)
        pivot = m[..., k, cols] / m[..., k, k, None]
        m[..., :, cols] -= m[..., :, k, None] * pivot[..., None, :]
        m[..., k, cols] = pivot
    return m[..., n].copy()


# ---- random variates from uniform draws ---------------------------------------------------------


def _shape(size) -> tuple[int, ...]:
    return () if size is None else (int(size),) if isinstance(size, (int, np.integer)) else tuple(size)


def standard_normal(rng: np.random.Generator, size) -> np.ndarray:
    """N(0, 1) draws by Box-Muller from two uniforms each: sqrt(-2 log(1 - u1)) cos(2 pi u2)."""
    u = rng.random((2, *_shape(size)))
    return np.sqrt(-2.0 * log(1.0 - u[0])) * cos(TWO_PI * u[1])


def standard_exponential(rng: np.random.Generator, size) -> np.ndarray:
    """Exp(1) draws by inversion: -log(1 - u)."""
    return -log(1.0 - rng.random(_shape(size)))


class Variates:
    """Random variates from a `numpy.random.Generator`, through its portable draws only.

    `random`, `integers` and `permutation` are the generator's own (exact); `uniform` is
    low + (high - low) * u; `standard_normal` is Box-Muller (sqrt(-2 log(1 - u1)) cos(2 pi u2)) and
    `exponential` inversion (-log(1 - u)), both computed BLOCK draws at a time and served in
    order, so many small requests cost one vectorised evaluation. The sequence of variates is a
    function of the generator's state and of the sequence of requests only.
    """

    BLOCK = 512

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._buffers = {"normal": (np.empty(0), 0), "exponential": (np.empty(0), 0)}

    def random(self, size=None):
        return self.rng.random(size)

    def integers(self, low, high=None, size=None):
        return self.rng.integers(low, high, size)

    def permutation(self, n: int) -> np.ndarray:
        return self.rng.permutation(n)

    def uniform(self, low=0.0, high=1.0, size=None):
        """U[low, high) (a float when every input is a scalar)."""
        if size is None and isinstance(low, float | int) and isinstance(high, float | int):
            return low + (high - low) * self.rng.random()  # Python floats: the same IEEE operations
        out = np.add(low, np.multiply(np.subtract(high, low), self.rng.random(size)))
        return float(out) if np.ndim(out) == 0 else out

    def _serve(self, kind: str, size, fresh) -> np.ndarray | float:
        """The next draws of `kind`, refilling its buffer with `fresh(count)` when it runs short."""
        shape = _shape(size)
        n = math.prod(shape)
        buffer, used = self._buffers[kind]
        if used + n > len(buffer):
            buffer, used = np.concatenate([buffer[used:], fresh(max(n, self.BLOCK))]), 0
        self._buffers[kind] = buffer, used + n
        return float(buffer[used]) if size is None else buffer[used : used + n].reshape(shape)

    def standard_normal(self, size=None):
        """N(0, 1) draws (a float for size=None)."""
        return self._serve("normal", size, lambda n: standard_normal(self.rng, n))

    def exponential(self, scale=1.0, size=None):
        """Exp(mean `scale`) draws (a float for size=None and a scalar scale)."""
        out = np.multiply(self._serve("exponential", size, lambda n: standard_exponential(self.rng, n)), scale)
        return float(out) if np.ndim(out) == 0 else out
