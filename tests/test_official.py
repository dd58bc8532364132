"""Interop with xenoverse's task dict: round trips, bad dicts, and stepping xenoverse's env."""

from __future__ import annotations

import numpy as np
import pytest

from bench.anymdp import from_official, sample_garnet, sample_task, to_official
from bench.anymdp.sampler import task_quality
from bench.errors import BenchError


@pytest.mark.parametrize("task", [sample_task(16, 5, 0), sample_task(1, 4, 1), sample_garnet(8, 3, 2, 2)], ids=repr)
def test_round_trip_keeps_the_task(task):
    official = to_official(task)
    assert official["s_e"].tolist() == np.flatnonzero(task.terminal).tolist()
    assert official["final_goal_terminate"] == bool(task.ns > 1 and task.terminal[-1])
    again = from_official(official, seed=task.seed)
    assert again == task and again.kind == task.kind


def test_plain_official_dict_imports_as_official_kind():
    official = to_official(sample_task(8, 5, 3))
    del official["bench_kind"]
    official["max_steps"] = 120.3  # xenoverse draws a float; it truncates at step 121
    task = from_official(official)
    assert task.kind == "official" and task.horizon == 121


def _broken(change):
    official = to_official(sample_task(8, 5, 4))
    change(official)
    return official


def _row_sum_broken():
    """A row of a start state (never terminal) that no longer sums to 1, and the expected message."""
    official = to_official(sample_task(8, 5, 4))
    s = int(official["s_0"][0])
    official["transition"][s, 1, 0] = 5.0
    return official, rf"row \(s={s}, a=1\)"


@pytest.mark.parametrize(
    "official, match",
    [
        ([1, 2], "must be a dict"),
        (_broken(lambda d: d.pop("reward")), "lacks keys"),
        (_broken(lambda d: d.update(task_type="POMDP")), "task_type"),
        (_broken(lambda d: d.update(ns=True)), "'ns'"),
        (_broken(lambda d: d.update(reward=np.zeros((8, 5, 7)))), "'reward' must have shape"),
        (_broken(lambda d: d.update(state_mapping=np.arange(6))), "permutation"),
        (_broken(lambda d: d.update(state_mapping=np.arange(1, 9))), "state_mapping"),
        (_broken(lambda d: d.update(s_0_prob=d["s_0_prob"] * 2)), "s_0_prob"),
        (_broken(lambda d: d.update(s_e=np.array([d["s_0"][0]]))), "also terminal"),
        _row_sum_broken(),
        (_broken(lambda d: d["reward"].__setitem__((0, 0, 0), np.nan)), "finite"),
        (_broken(lambda d: d.update(max_steps=-3)), "max_steps"),
    ],
)
def test_malformed_dict_raises(official, match):
    with pytest.raises(BenchError, match=match):
        from_official(official)


@pytest.fixture(scope="module")
def xenoverse_anymdp():
    return pytest.importorskip("xenoverse.anymdp")


def test_official_tasks_import_exactly(xenoverse_anymdp):
    from bench.anymdp.fidelity import official_sampler

    before = np.random.get_state()[1].copy()
    task = official_sampler()(16, 5, 11)
    assert np.array_equal(np.random.get_state()[1], before)  # xenoverse's global seeding is confined
    official = xenoverse_anymdp.AnyMDPTaskSampler(16, 5, seed=11)
    back = to_official(task)
    for key in ("transition", "reward", "reward_noise", "state_mapping", "s_0", "s_0_prob", "s_e"):
        assert np.array_equal(back[key], np.asarray(official[key])), key
    assert task.horizon == int(np.ceil(official["max_steps"]))
    assert task_quality(task).accepted  # the official filter's decision, recomputed exactly


def test_xenoverse_env_steps_match_our_arrays(xenoverse_anymdp):
    task = sample_task(16, 5, 5)
    env = xenoverse_anymdp.AnyMDPEnv(max_steps=10)
    env.set_task(to_official(task))
    inner_of = np.argsort(task.permutation)
    rng = np.random.default_rng(0)
    saved = np.random.get_state()
    try:
        for episode in range(20):  # whole episodes: every step agrees with our arrays
            obs, _ = env.reset()
            np.random.seed(episode)  # xenoverse reseeds from OS entropy in reset(); pin it for the test
            state = inner_of[obs]
            assert task.start[state] > 0
            for step in range(1, task.horizon + 1):
                action = int(rng.integers(task.na))
                obs, _, terminated, truncated, info = env.step(action)
                following = inner_of[obs]
                assert task.transition[state, action, following] > 0
                assert info["reward_gt"] == task.reward[state, action, following]
                assert terminated == task.terminal[following] and truncated == (step >= task.horizon)
                state = following
                if terminated or truncated:
                    break
        # next-state frequencies from a few (s, a) pairs match our transition rows
        pairs = [(s, a) for s in np.flatnonzero(~task.terminal)[:4] for a in range(2)]
        for s, a in pairs:
            counts = np.zeros(task.ns)
            env.reset()
            np.random.seed(1000 + s * task.na + a)
            for _ in range(400):
                env._state, env.steps = s, 0  # put the env back in inner state s
                counts[inner_of[env.step(a)[0]]] += 1
            assert np.abs(counts / 400 - task.transition[s, a]).sum() < 0.25  # 2 x total variation
    finally:
        np.random.set_state(saved)
