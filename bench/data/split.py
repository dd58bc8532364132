"""The frozen task split: every train, valid and test task derives from (split seed, role, index).

A task seed is the bit field `split_seed << 32 | role << 30 | index` (index < 2**30), so the
train, valid and test seed ranges are disjoint by construction, whatever the preset sizes. The
fourth role, "fresh", is never published: `nonce << 64 | split_seed << 32 | 3 << 30 | index` gives
a new set of test-like tasks per nonce, disjoint from the split and from every other nonce. Test
indices are `ns << 20 | j` for the j-th task of an ns group: a test group is the same set of tasks
in every preset with the same split seed (smaller presets take a prefix of each group).
The state count of a train or valid task is drawn inside `DataSpec.train_ns` from a stream of the
task's own seed, so a task never depends on any other task.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

import numpy as np

from bench.anymdp.sampler import sample_task
from bench.anymdp.task import Task
from bench.data.behavior import check_policy_weights
from bench.errors import BenchError
from bench.presets import DataSpec, Preset

ROLES = {"train": 0, "valid": 1, "test": 2, "fresh": 3}
INDEX_BITS = 30
TEST_NS_SHIFT = 20
MAX_NS = 1 << (INDEX_BITS - TEST_NS_SHIFT)
FRESH_NONCE_SHIFT = 64
MAX_NONCE = 1 << 32
"""Fresh-task nonces are ints in [0, MAX_NONCE)."""
MIN_NS = 8
"""Smallest AnyMDP state count (ns = 1, a bandit, is allowed for test groups only)."""
NS_STREAM = 1
"""SeedSequence spawn key of the stream that draws a train/valid task's ns from its seed."""


def check_data_spec(preset: Preset) -> None:
    """Raise a BenchError naming the first setting of `preset.data` that cannot make a split."""
    spec: DataSpec = preset.data
    if not 0 <= preset.split_seed < 1 << 31:
        raise BenchError(f"split_seed must be in [0, 2**31); got {preset.split_seed}")
    lo, hi = spec.train_ns
    if not MIN_NS <= lo <= hi < MAX_NS:
        raise BenchError(f"train_ns must be (lo, hi) with {MIN_NS} <= lo <= hi < {MAX_NS}; got {spec.train_ns}")
    for name in ("train_tasks", "seq_len", "shard_size", "test_tasks_per_ns", "valid_tasks"):
        value = getattr(spec, name)
        if not isinstance(value, int) or value < 1:
            raise BenchError(f"{name} must be a positive int; got {value!r}")
    if spec.train_tasks > 1 << INDEX_BITS or spec.valid_tasks > 1 << INDEX_BITS:
        raise BenchError(f"train_tasks and valid_tasks must be <= 2**{INDEX_BITS}")
    if spec.test_tasks_per_ns > 1 << TEST_NS_SHIFT:
        raise BenchError(f"test_tasks_per_ns must be <= 2**{TEST_NS_SHIFT}; got {spec.test_tasks_per_ns}")
    if not 2 <= spec.na <= 127:
        raise BenchError(f"na must be in [2, 127]; got {spec.na}")
    check_policy_weights(spec.policy_weights)
    if not spec.test_ns or any(ns != 1 and not MIN_NS <= ns < MAX_NS for ns in spec.test_ns):
        raise BenchError(
            f"test_ns must be a non-empty tuple of 1 or values in [{MIN_NS}, {MAX_NS}); got {spec.test_ns}"
        )
    if len(set(spec.test_ns)) != len(spec.test_ns):
        raise BenchError(f"test_ns must not repeat a value; got {spec.test_ns}")


def task_seed(preset: Preset, role: str, index: int) -> int:
    """The seed of task `index` of a split role ("train", "valid" or "test")."""
    if role not in ROLES:
        raise BenchError(f"unknown split role {role!r}; choose from: {', '.join(ROLES)}")
    if not isinstance(index, (int, np.integer)) or not 0 <= index < 1 << INDEX_BITS:
        raise BenchError(f"task index must be an int in [0, 2**{INDEX_BITS}); got {index!r}")
    return (preset.split_seed << 32) | (ROLES[role] << INDEX_BITS) | int(index)


def _checked_index(preset: Preset, role: str, index: int, count: int) -> int:
    if not isinstance(index, (int, np.integer)) or not 0 <= index < count:
        raise BenchError(f"{role} task index must be an int in [0, {count}) for preset {preset.name!r}; got {index!r}")
    return int(index)


def draw_ns(seed: int, ns_range: tuple[int, int]) -> int:
    """The state count of a train/valid task, from its own seed's NS_STREAM."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(NS_STREAM,)))
    return int(ns_range[0] + rng.integers(ns_range[1] - ns_range[0] + 1))


def train_task_seed(preset: Preset, i: int) -> int:
    return task_seed(preset, "train", _checked_index(preset, "train", i, preset.data.train_tasks))


def valid_task_seed(preset: Preset, i: int) -> int:
    return task_seed(preset, "valid", _checked_index(preset, "valid", i, preset.data.valid_tasks))


def train_task(preset: Preset, i: int) -> Task:
    seed = train_task_seed(preset, i)
    return sample_task(draw_ns(seed, preset.data.train_ns), preset.data.na, seed=seed)


def valid_task(preset: Preset, i: int) -> Task:
    """Held-out task i for offline evaluation: made like a train task, from the valid seed range."""
    seed = valid_task_seed(preset, i)
    return sample_task(draw_ns(seed, preset.data.train_ns), preset.data.na, seed=seed)


def test_task_specs(preset: Preset) -> list[tuple[int, int, int]]:
    """(ns, na, seed) of every test task, grouped by ns in `test_ns` order."""
    return _grouped_specs(preset, "test")


def fresh_task_specs(preset: Preset, nonce: int) -> list[tuple[int, int, int]]:
    """(ns, na, seed) of the never-published tasks of `nonce`: the test split's ns groups and sizes,
    from the "fresh" role with the nonce above bit 64 (disjoint from train, valid, test, other nonces)."""
    if isinstance(nonce, bool) or not isinstance(nonce, (int, np.integer)) or not 0 <= nonce < MAX_NONCE:
        raise BenchError(f"nonce must be an int in [0, 2**32); got {nonce!r}")
    return [(ns, na, int(nonce) << FRESH_NONCE_SHIFT | seed) for ns, na, seed in _grouped_specs(preset, "fresh")]


def _grouped_specs(preset: Preset, role: str) -> list[tuple[int, int, int]]:
    """(ns, na, seed) of role's tasks indexed `ns << TEST_NS_SHIFT | j`, grouped by ns in `test_ns` order."""
    check_data_spec(preset)
    spec = preset.data
    return [
        (ns, spec.na, task_seed(preset, role, ns << TEST_NS_SHIFT | j))
        for ns in spec.test_ns
        for j in range(spec.test_tasks_per_ns)
    ]


def split_task_specs(preset: Preset, role: str, indices: Sequence[int]) -> list[tuple[int, int, int]]:
    """(ns, na, seed) of train or valid tasks `indices` (cheap: no task is sampled)."""
    seed_of = {"train": train_task_seed, "valid": valid_task_seed}[role]
    seeds = [seed_of(preset, i) for i in indices]
    return [(draw_ns(seed, preset.data.train_ns), preset.data.na, seed) for seed in seeds]


def _sample(spec: tuple[int, int, int]) -> Task:
    ns, na, seed = spec
    return sample_task(ns, na, seed=seed)


@contextmanager
def task_sampler(workers: int = 1) -> Iterator[Callable[[Sequence[tuple[int, int, int]]], list[Task]]]:
    """A function (ns, na, seed) specs -> tasks, in order; it uses `workers` processes when > 1."""
    if workers <= 1:
        yield lambda specs: [_sample(spec) for spec in specs]
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield lambda specs: list(pool.map(_sample, specs, chunksize=max(1, len(specs) // (8 * workers))))


def sample_tasks(specs: Sequence[tuple[int, int, int]], workers: int = 1) -> list[Task]:
    """Sample tasks from (ns, na, seed) specs, in order; in `workers` processes when > 1."""
    with task_sampler(workers if len(specs) > 1 else 1) as sample:
        return sample(specs)


def test_tasks(preset: Preset, workers: int = 1) -> list[Task]:
    """Every test task, grouped by ns in `preset.data.test_ns` order, `test_tasks_per_ns` each."""
    return sample_tasks(test_task_specs(preset), workers)
