"""Interop with the official generator (xenoverse 0.1.14.0): its task dict <-> our `Task`.

The dict is what xenoverse's `AnyMDPTaskSampler` returns and `AnyMDPEnv.set_task` takes:
ns, na, max_steps, state_mapping (observation id of each inner state), transition / reward /
reward_noise (ns, na, ns) in inner order, s_0 and s_0_prob (start states and weights), s_e
(terminal inner states), task_type "MDP", final_goal_terminate. This module does not import
xenoverse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from bench.anymdp.task import Task
from bench.errors import BenchError

REQUIRED_KEYS = (
    "ns", "na", "max_steps", "state_mapping", "transition", "reward", "reward_noise", "s_0", "s_0_prob", "s_e",
)  # fmt: skip
ROW_SUM_TOLERANCE = 1e-3  # xenoverse's check: (row sum - 1)^2 < 1e-6
KIND_KEY = "bench_kind"  # extra key so that a round trip keeps Task.kind; set_task ignores it


def to_official(task: Task) -> dict[str, Any]:
    """The xenoverse task dict of `task` (fresh, writable arrays)."""
    starts = np.flatnonzero(task.start > 0)
    return {
        "ns": task.ns,
        "na": task.na,
        "max_steps": task.horizon,  # xenoverse truncates at steps >= max_steps: same horizon
        "state_mapping": task.permutation.copy(),
        "task_type": "MDP",
        "transition": task.transition.copy(),
        "reward": task.reward.copy(),
        "reward_noise": task.reward_noise.copy(),
        "s_0": starts,
        "s_0_prob": task.start[starts].copy(),
        "s_e": np.flatnonzero(task.terminal),
        "final_goal_terminate": bool(task.ns > 1 and task.terminal[-1]),
        KIND_KEY: task.kind,
    }


def _array(d: Mapping[str, Any], key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    try:
        value = np.asarray(d[key], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise BenchError(f"task dict {key!r} must be numeric; got {type(d[key]).__name__}") from err
    if shape is not None and value.shape != shape:
        raise BenchError(f"task dict {key!r} must have shape {shape}; got {value.shape}")
    if not np.all(np.isfinite(value)):
        raise BenchError(f"task dict {key!r} must be finite")
    return value


def _state_ids(d: Mapping[str, Any], key: str, ns: int) -> np.ndarray:
    values = _array(d, key).reshape(-1)
    if values.size and (np.any(values != np.round(values)) or values.min() < 0 or values.max() >= ns):
        raise BenchError(f"task dict {key!r} must hold state indices in [0, {ns}); got {values.tolist()}")
    return values.astype(np.int64)


def _positive_int(d: Mapping[str, Any], key: str) -> int:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BenchError(f"task dict {key!r} must be a positive int; got {value!r}")
    return int(value)


def from_official(d: Mapping[str, Any], seed: int | None = None) -> Task:
    """A `Task` from a xenoverse task dict; `seed` is stored as metadata.

    Terminal rows are zeroed (xenoverse never reads them). Tasks sampled with
    `min_state_space` (fewer real states than ns) are not supported.
    """
    if not isinstance(d, Mapping):
        raise BenchError(f"task must be a dict; got {type(d).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in d]
    if missing:
        raise BenchError(f"task dict lacks keys {missing}; needs {list(REQUIRED_KEYS)}")
    if d.get("task_type", "MDP") != "MDP":
        raise BenchError(f"task dict 'task_type' must be 'MDP'; got {d['task_type']!r}")
    ns, na = _positive_int(d, "ns"), _positive_int(d, "na")
    mapping = _state_ids(d, "state_mapping", ns)
    if sorted(mapping.tolist()) != list(range(ns)):
        raise BenchError(
            f"task dict 'state_mapping' must be a permutation of range({ns}) (min_state_space is not supported)"
        )
    transition = _array(d, "transition", (ns, na, ns))
    reward = _array(d, "reward", (ns, na, ns))
    noise = _array(d, "reward_noise", (ns, na, ns))
    if np.any(transition < 0) or np.any(noise < 0):
        raise BenchError("task dict 'transition' and 'reward_noise' must be non-negative")
    max_steps = float(np.asarray(d["max_steps"], dtype=np.float64))
    if not math.isfinite(max_steps) or max_steps <= 0:
        raise BenchError(f"task dict 'max_steps' must be a positive number; got {d['max_steps']!r}")
    starts = _state_ids(d, "s_0", ns)
    start_prob = _array(d, "s_0_prob").reshape(-1)
    shape_ok = starts.size > 0 and start_prob.shape == starts.shape
    if not shape_ok or np.any(start_prob < 0) or abs(start_prob.sum() - 1) > ROW_SUM_TOLERANCE:
        raise BenchError(
            f"task dict 's_0_prob' must be a distribution over 's_0'; got s_0={starts.tolist()}, "
            f"s_0_prob={start_prob.tolist()}"
        )
    terminal = np.zeros(ns, dtype=bool)
    terminal[_state_ids(d, "s_e", ns)] = True
    if np.any(terminal[starts]):
        raise BenchError(f"task dict start states {starts[terminal[starts]].tolist()} are also terminal ('s_e')")
    transition[terminal] = 0.0
    bad_rows = np.argwhere(np.abs(transition.sum(axis=2) - 1.0)[~terminal] > ROW_SUM_TOLERANCE)
    if bad_rows.size:
        s, a = np.flatnonzero(~terminal)[bad_rows[0, 0]], bad_rows[0, 1]
        total = transition[s, a].sum()
        raise BenchError(f"task dict 'transition' row (s={s}, a={a}) sums to {total:.6g}; rows must sum to 1")
    start = np.zeros(ns)
    np.add.at(start, starts, start_prob)
    return Task(
        transition=transition, reward=reward, reward_noise=noise, start=start, terminal=terminal,
        horizon=math.ceil(max_steps), permutation=mapping, kind=str(d.get(KIND_KEY, "official")), seed=seed,
    )  # fmt: skip
