"""DPD synthesis: oracle labels, behavior policies between random and oracle, learners that
improve, tags, episode boundaries, and independence from batch composition."""

from __future__ import annotations

import numpy as np
import pytest

from bench.anymdp.sampler import sample_task
from bench.anymdp.solvers import TaskArrays, label_policy, oracle_returns, random_returns
from bench.anymdp.task import Task
from bench.data import behavior as bh
from bench.data.stats import sequence_episodes
from bench.data.synth import FIELDS, synthesize
from bench.errors import BenchError


@pytest.fixture(scope="module")
def batch():
    tasks = [sample_task(16, 5, seed=5000 + i) for i in range(96)]
    return tasks, synthesize(tasks, 1024)


def inner_states(task: Task, obs: np.ndarray) -> np.ndarray:
    return np.argsort(task.permutation)[obs]


def test_fields_shapes_and_ranges(batch):
    tasks, out = batch
    assert set(out) == set(FIELDS)
    for name, dtype in FIELDS.items():
        assert out[name].shape == (96, 1024) and out[name].dtype == dtype
    assert out["obs"].min() >= 0 and out["obs"].max() < 16
    assert out["action"].min() >= 0 and out["action"].max() < 5
    assert (out["prompt"] == bh.PROMPT_ORACLE).all()
    assert out["tag"].max() < bh.N_TAGS and out["policy"].max() < len(bh.POLICIES)


def test_labels_are_the_oracle_greedy_action_of_the_current_state(batch):
    tasks, out = batch
    for b in range(0, 96, 7):
        greedy = label_policy(TaskArrays.stack([tasks[b]]))[0]
        np.testing.assert_array_equal(out["label"][b], greedy[inner_states(tasks[b], out["obs"][b])])


def test_oracle_tagged_and_oracle_policy_steps_follow_the_label(batch):
    _, out = batch
    oracle_tag = out["tag"] == bh.TAG_ID["oracle"]
    assert oracle_tag.any()
    np.testing.assert_array_equal(out["action"][oracle_tag], out["label"][oracle_tag])
    pure = out["policy"] == bh.ORACLE
    assert pure.any() and (out["action"][pure] == out["label"][pure]).all()
    masked = (out["tag"] == bh.TAG_UNKNOWN).mean()
    assert 0.1 < masked < 0.5  # 15 % of sequences plus 15 % of the other episodes, in expectation 0.28


def test_episodes_restart_in_start_states_and_respect_the_horizon(batch):
    tasks, out = batch
    for b in range(0, 96, 5):
        task, done = tasks[b], out["done"][b]
        states = inner_states(task, out["obs"][b])
        assert task.start[states[0]] > 0
        ends = np.flatnonzero(done[:-1])
        assert (task.start[states[ends + 1]] > 0).all()
        lengths = np.diff(np.r_[-1, np.flatnonzero(done)])
        assert lengths.max() <= task.horizon
        assert not task.terminal[states].any()  # the agent never acts in a terminal state


def test_behavior_policies_lie_between_random_and_oracle_and_learners_improve(batch):
    tasks, out = batch
    arrays = TaskArrays.stack(tasks)
    rows, starts, kinds, scores = sequence_episodes(
        out["reward"], out["done"], out["policy"], oracle_returns(arrays), random_returns(arrays)
    )
    means = {}
    for k, name in enumerate(bh.POLICIES):
        mine = (kinds == k) & np.isfinite(scores)
        assert mine.sum() >= 100, name
        means[name] = scores[mine].mean()
        if name in ("q_learning", "model_based", "mixture"):
            early, late = scores[mine & (starts < 512)].mean(), scores[mine & (starts >= 512)].mean()
            assert late > early + 0.03, (name, early, late)
    assert abs(means["random"]) < 0.2
    # the label oracle is near-optimal: about 1, within the sampling error of its few episodes
    # (about 200 over 30-odd tasks; tasks differ, so the error is the spread of per-task means)
    oracle = (kinds == bh.ORACLE) & np.isfinite(scores)
    per_task = np.array([scores[oracle & (rows == r)].mean() for r in np.unique(rows[oracle])])
    assert 0.8 < per_task.mean() < 1 + 3 * per_task.std(ddof=1) / np.sqrt(len(per_task))
    for name in ("q_learning", "model_based", "mixture", "eps_oracle"):
        assert means["random"] < means[name] < means["oracle"], (name, means)


def test_a_sequence_does_not_depend_on_its_batch():
    tasks = [sample_task(ns, 5, seed=seed) for ns, seed in ((8, 1), (16, 2), (12, 3))]
    together = synthesize(tasks, 300)
    alone = synthesize(tasks[1:2], 300)
    again = synthesize(tasks[1:2], 300)
    for name in FIELDS:
        np.testing.assert_array_equal(together[name][1], alone[name][0])
        np.testing.assert_array_equal(again[name], alone[name])


def test_bad_inputs_raise():
    task = sample_task(8, 5, seed=1)
    seedless = Task(
        task.transition, task.reward, task.reward_noise, task.start, task.terminal, task.horizon, task.permutation
    )
    with pytest.raises(BenchError, match="seed"):
        synthesize([seedless], 10)
    with pytest.raises(BenchError, match="seq_len"):
        synthesize([task], 0)
    with pytest.raises(BenchError, match="na"):
        synthesize([task, sample_task(8, 4, seed=2)], 10)
    with pytest.raises(BenchError, match="at least one task"):
        synthesize([], 10)
    with pytest.raises(BenchError, match="labels must have shape"):
        synthesize([task], 10, labels=np.zeros((1, 7), dtype=np.int64))


def test_policy_weights_choose_the_behavior_kinds():
    tasks = [sample_task(8, 5, seed=700 + i) for i in range(24)]
    only_learners = synthesize(tasks, 400, policy_weights=(0, 1, 1, 0, 0, 0))
    assert set(np.unique(only_learners["policy"])) == {bh.Q_LEARNING, bh.MODEL_BASED}
    only_random = synthesize(tasks, 400, policy_weights=(1, 0, 0, 0, 0, 0))
    assert (only_random["policy"] == bh.RANDOM).all()
    with pytest.raises(BenchError, match="policy_weights.*6 non-negative"):
        synthesize(tasks, 10, policy_weights=(1, 1))
    with pytest.raises(BenchError, match="policy_weights"):
        synthesize(tasks, 10, policy_weights=(0, 0, 0, 0, 0, 0))
