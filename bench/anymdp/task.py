"""`Task`: an immutable record of one tabular MDP.

All arrays are indexed by *inner* states (the generator's own order, in which value tends to
grow with the index). The agent never sees inner indices: it observes `permutation[s]`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from bench.anymdp import portable as pt
from bench.errors import BenchError

FINGERPRINT_VERSION = 2
ARRAYS = ("transition", "reward", "reward_noise", "start", "terminal", "permutation")
"""The arrays a task's fingerprint covers, in hashing order."""


def canonical_bytes(array: np.ndarray) -> bytes:
    """An array's machine-independent byte form: C order, little-endian float64 / int64 / uint8
    (booleans), with -0.0 written as +0.0."""
    if array.dtype == np.bool_:
        return np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if array.dtype.kind == "f":
        return np.ascontiguousarray(array + 0.0, dtype="<f8").tobytes()  # -0.0 + 0.0 == +0.0
    return np.ascontiguousarray(array, dtype="<i8").tobytes()


def _frozen(array: np.ndarray, dtype: type) -> np.ndarray:
    out = np.ascontiguousarray(array, dtype=dtype).copy()
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class Task:
    transition: np.ndarray
    """(ns, na, ns) float64: P(s' | s, a). Rows of terminal states are all zero."""
    reward: np.ndarray
    """(ns, na, ns) float64: mean reward of the transition (s, a, s')."""
    reward_noise: np.ndarray
    """(ns, na, ns) float64: std of the Gaussian reward noise of (s, a, s')."""
    start: np.ndarray
    """(ns,) float64: start-state distribution."""
    terminal: np.ndarray
    """(ns,) bool: entering such a state ends the episode."""
    horizon: int
    """Episode length limit in steps (truncation)."""
    permutation: np.ndarray
    """(ns,) int64: observation id of each inner state (a permutation of range(ns))."""
    kind: str = "anymdp"
    """Generator that made the task: 'anymdp', 'bandit', 'garnet', or 'official' (imported)."""
    seed: int | None = field(default=None)
    """Seed the generator was called with, if any (metadata; not part of the fingerprint)."""

    def __post_init__(self) -> None:
        transition = np.asarray(self.transition)
        if transition.ndim != 3 or transition.shape[0] != transition.shape[2]:
            raise BenchError(f"transition must have shape (ns, na, ns); got {transition.shape}")
        ns, na, _ = transition.shape
        checks = {
            "reward": (self.reward, (ns, na, ns)),
            "reward_noise": (self.reward_noise, (ns, na, ns)),
            "start": (self.start, (ns,)),
            "terminal": (self.terminal, (ns,)),
            "permutation": (self.permutation, (ns,)),
        }
        for name, (value, shape) in checks.items():
            if np.shape(value) != shape:
                raise BenchError(f"{name} must have shape {shape} for ns={ns}, na={na}; got {np.shape(value)}")
        if int(self.horizon) < 1:
            raise BenchError(f"horizon must be a positive int; got {self.horizon}")
        if sorted(np.asarray(self.permutation).tolist()) != list(range(ns)):
            raise BenchError("permutation must be a permutation of range(ns)")
        set_ = object.__setattr__
        set_(self, "transition", _frozen(transition, np.float64))
        set_(self, "reward", _frozen(self.reward, np.float64))
        set_(self, "reward_noise", _frozen(self.reward_noise, np.float64))
        set_(self, "start", _frozen(self.start, np.float64))
        set_(self, "terminal", _frozen(self.terminal, np.bool_))
        set_(self, "permutation", _frozen(self.permutation, np.int64))
        set_(self, "horizon", int(self.horizon))

    @property
    def ns(self) -> int:
        return self.transition.shape[0]

    @property
    def na(self) -> int:
        return self.transition.shape[1]

    @property
    def expected_reward(self) -> np.ndarray:
        """(ns, na) expected immediate reward E[r | s, a]."""
        return pt.dot(self.transition, self.reward)

    def array_digests(self) -> dict[str, str]:
        """sha256 hex of each array of ARRAYS in its canonical byte form (`canonical_bytes`)."""
        return {name: hashlib.sha256(canonical_bytes(getattr(self, name))).hexdigest() for name in ARRAYS}

    def array_sums(self) -> dict[str, float]:
        """The sum of each array of ARRAYS: with `array_digests`, what `explain_mismatch` compares."""
        return {name: float(np.sum(getattr(self, name), dtype=np.float64)) for name in ARRAYS}

    def fingerprint(self) -> str:
        """The task's identity on any machine: sha256 hex over kind, sizes, horizon and the
        canonical digests of its arrays."""
        head = f"task-v{FINGERPRINT_VERSION}|{self.kind}|{self.ns}|{self.na}|{self.horizon}"
        body = "|".join(f"{name}:{digest}" for name, digest in self.array_digests().items())
        return hashlib.sha256(f"{head}|{body}".encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and self.fingerprint() == other.fingerprint()

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __repr__(self) -> str:
        return f"Task(kind={self.kind!r}, ns={self.ns}, na={self.na}, horizon={self.horizon}, seed={self.seed})"
