"""Evaluation: rollouts of stand-in agents score as expected; offline losses by position."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from bench import evaluate as E
from bench import rollout as R
from bench.anymdp.sampler import sample_task
from bench.errors import BenchError
from tests.test_train import MICRO, micro_model, synthetic_batch

STEPS = 2000


@functools.cache
def tasks():
    return tuple([sample_task(8, 5, seed=i) for i in range(6)] + [sample_task(1, 5, seed=i) for i in range(4)])


@functools.cache
def gaps():
    return E.task_gaps(tasks())


def kept_tasks():
    return [t for t, k in zip(tasks(), gaps()[2]) if k]


def episode_scores(result):
    """(task of each episode, its normalised return)."""
    j_rand, j_opt, keep = gaps()
    ep = E.metrics.episodes(result.rewards, result.dones, result.steps)
    return ep.task, E.metrics.normalized(ep.ret, j_rand[keep][ep.task], j_opt[keep][ep.task])


def scored(agent, seed=0, temperature=(1.0, 1.0, 0)):
    """(rollout, summary, mean over tasks of the mean normalised episode return)."""
    j_rand, j_opt, keep = gaps()
    result = R.rollout(agent, kept_tasks(), STEPS, seed, temperature, prompt_id=0, tag_id=4)
    task, scores = episode_scores(result)
    whole = float(np.mean(np.bincount(task, scores) / np.bincount(task)))
    return result, E.summarize_rollout(result, kept_tasks(), j_rand[keep], j_opt[keep], MICRO, seed), whole


def test_temperature_schedule_and_bins():
    assert R.temperature_at(0, (1.0, 0.1, 10)) == 1.0
    assert R.temperature_at(5, (1.0, 0.1, 10)) == pytest.approx(0.55)
    assert R.temperature_at(50, (1.0, 0.1, 10)) == pytest.approx(0.1)
    assert E.bin_edges(1024) == [0, 16, 32, 64, 128, 256, 512, 1024]
    assert E.bin_edges(24) == [0, 16, 24]


def test_oracle_stand_in_scores_about_one():
    _, summary, whole = scored(R.OracleAgent(kept_tasks()))
    assert abs(whole - 1) < 0.05
    overall = summary["overall"]
    assert abs(overall["first_quarter"] - 1) < 0.15 and abs(overall["last_quarter"] - 1) < 0.15
    assert overall["steps_to_80"] is not None and overall["steps_to_80"] < 200
    assert set(summary["groups"]) == {"ns=1", "ns=8"}
    assert summary["groups"]["ns=1"]["asymptotic_last10"] == pytest.approx(1.0, abs=0.05)


def test_random_stand_in_scores_about_zero_and_does_not_learn():
    result, summary, whole = scored(R.RandomAgent(5))
    task, scores = episode_scores(result)  # J_rand is exact: `whole` is 0 up to sampling error
    per_task = [(scores[task == t].var(ddof=1), (task == t).sum()) for t in range(task.max() + 1)]
    standard_error = np.sqrt(sum(v / n for v, n in per_task)) / len(per_task)
    assert abs(whole) < 4 * standard_error < 0.1
    overall = summary["overall"]
    assert abs(overall["first_quarter"]) < 0.15 and abs(overall["last_quarter"]) < 0.15
    lo, hi = overall["quarter_diff_ci"]
    assert lo < 0.1 and hi > -0.1
    assert overall["steps_to_80"] is None
    counts = np.bincount(result.actions.ravel(), minlength=5) / result.actions.size
    assert np.abs(counts - 0.2).max() < 0.01


def test_tql_ucb_is_fed_every_transition_and_beats_random():
    agent = R.TQLUCBAgent(len(kept_tasks()), 8, 5, seed=0)
    result, _, whole = scored(agent)
    assert (agent.learner.visits.sum(axis=(1, 2)) == result.rewards.shape[1]).all()
    assert whole > 0.15


def test_rollout_is_seeded_and_model_shares_the_api():
    model = micro_model()
    kept = list(tasks())[:3]
    a = R.rollout(model, kept, 40, 3, (1.0, 0.1, 40), 0, 4)
    b = R.rollout(model, kept, 40, 3, (1.0, 0.1, 40), 0, 4)
    assert np.array_equal(a.actions, b.actions) and np.array_equal(a.rewards, b.rewards)
    assert a.steps == 40 and a.rewards.shape == a.dones.shape and a.rewards.shape[1] >= 40
    # the tail only finishes open episodes: each task's last recorded step ends an episode
    assert all(a.dones[i, a.dones[i].nonzero()[0][-1]] for i in range(3))
    assert a.dones[:, 39:].any(axis=1).all()
    with pytest.raises(BenchError, match="steps=0"):
        R.rollout(model, kept, 0, 3, (1.0, 0.1, 40), 0, 4)


def test_interactive_eval_record_follows_schema_keys():
    preset = dataclasses.replace(MICRO, recipe=dataclasses.replace(MICRO.recipe, eval_steps=400))
    record = E.interactive_eval(micro_model(), list(tasks()), preset, 0, 0, 4, log=lambda *_: None)
    assert set(record["agents"]) == {"model", "oracle", "random", "tql_ucb"}
    assert record["n_tasks"] + record["skipped_tasks"] == len(tasks())
    oracle, random = record["agents"]["oracle"]["overall"], record["agents"]["random"]["overall"]
    assert oracle["asymptotic_last10"] > random["asymptotic_last10"] + 0.5


def test_offline_eval_by_position():
    model = micro_model()
    batches = [synthetic_batch(i, batch=3, length=40) for i in range(2)]
    record = E.offline_eval(model, batches, segment_len=8)
    assert record["bin_edges"] == [0, 16, 32, 40] and record["n_sequences"] == 6
    for key in ("action_ce", "action_acc", "obs_ce", "reward_mse"):
        assert len(record[key]) == 3
    # an untrained model: cross-entropy about log(5), accuracy about 1/5
    assert abs(record["overall"]["action_ce"] - np.log(5)) < 0.1
    assert 0 <= record["overall"]["action_acc"] <= 1
    with pytest.raises(BenchError, match="empty"):
        E.offline_eval(model, [], 8)
    # the whole sequence in one segment gives the same numbers
    again = E.offline_eval(model, batches, segment_len=40)
    assert again["overall"]["action_ce"] == pytest.approx(record["overall"]["action_ce"], rel=1e-5)
    assert torch.get_num_threads() >= 1
