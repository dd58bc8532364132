"""Garnet(ns, na, b) control tasks: shapes, branching, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from bench.anymdp import sample_garnet
from bench.errors import BenchError


@pytest.mark.parametrize("ns, na, b", [(8, 2, 1), (16, 5, 3), (32, 4, 32)])
def test_shapes_and_branching(ns, na, b):
    task = sample_garnet(ns, na, b, seed=ns)
    assert task.kind == "garnet" and task.transition.shape == (ns, na, ns) == task.reward.shape
    assert np.all(np.count_nonzero(task.transition, axis=2) == b)
    assert np.allclose(task.transition.sum(axis=2), 1.0, atol=1e-12)
    assert not task.terminal.any() and np.all(task.reward_noise == 0)
    assert task.start[0] == 1.0 and task.start.sum() == 1.0
    assert max(4 * ns, 100) <= task.horizon <= max(min(8 * ns, 500), max(4 * ns, 100) + 1)


def test_next_states_and_rewards_look_uniform():
    task = sample_garnet(64, 5, 4, seed=0)
    hits = np.count_nonzero(task.transition, axis=(0, 1))  # 64 * 5 * 4 picks spread over 64 states
    assert hits.sum() == 64 * 5 * 4 and hits.max() < 3 * hits.mean()
    assert abs(task.reward.mean()) < 0.01 and 0.09 < task.reward.std() < 0.11


def test_deterministic_and_seed_dependent():
    assert sample_garnet(16, 5, 2, 3) == sample_garnet(16, 5, 2, 3)
    assert sample_garnet(16, 5, 2, 3) != sample_garnet(16, 5, 2, 4)
    assert sample_garnet(16, 5, 2, 3) != sample_garnet(16, 5, 3, 3)


@pytest.mark.parametrize(
    "args, match",
    [((1, 5, 1, 0), "ns"), ((16, 1, 2, 0), "na"), ((16, 5, 0, 0), "b"), ((16, 5, 17, 0), "b"),
     ((16, 5, 2, True), "seed"), ((16, 5, 2, 1.5), "seed"), ((16, 5, 2, None), "seed")],
)  # fmt: skip
def test_bad_input_raises(args, match):
    with pytest.raises(BenchError, match=match):
        sample_garnet(*args)
