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


def scored(agent, seed=0, temperature=(1.0, 1.0, 0)):
    """(rollout, summaries, per-task anchored scores (N, K)) of one rollout of `agent`."""
    j_rand, j_opt, keep = gaps()
    kept = kept_tasks()
    result = R.rollout(agent, kept, STEPS, seed, temperature, prompt_id=0, tag_id=4)
    curves, few = E.score_rollout(result, kept, j_rand[keep], j_opt[keep], 3)
    groups = [f"ns={t.ns}" for t in kept]
    summary = E.metrics.summarize(curves[0], few[0], groups, E.metrics.anchor_steps(STEPS), STEPS, 200, 0)
    return result, summary, curves[0]


def within_sampling_error(curves: np.ndarray, value: float) -> bool:
    """The mean of the per-task means of `curves` is within 4 standard errors of `value`."""
    per_task = E.metrics.nanmean(curves, axis=1)
    return abs(per_task.mean() - value) < 4 * per_task.std(ddof=1) / np.sqrt(per_task.size)


def test_temperature_schedule_and_bins():
    assert R.temperature_at(0, (1.0, 0.1, 10)) == 1.0
    assert R.temperature_at(5, (1.0, 0.1, 10)) == pytest.approx(0.55)
    assert R.temperature_at(50, (1.0, 0.1, 10)) == pytest.approx(0.1)
    assert E.bin_edges(1024) == [0, 16, 32, 64, 128, 256, 512, 1024]
    assert E.bin_edges(24) == [0, 16, 24]


def test_oracle_stand_in_scores_one_on_every_group():
    result, summary, curves = scored(R.OracleAgent(kept_tasks()))
    assert within_sampling_error(curves, 1.0)
    assert set(summary["groups"]) == {"ns=1", "ns=8"}
    for group in summary["groups"].values():  # bandits and MDPs alike
        lo, hi = group["final_ci"]
        assert lo <= 1.0 <= hi or abs(group["final"] - 1) < 0.05
    overall = summary["overall"]
    assert overall["reach_fraction"] == 1.0 and overall["steps_to_threshold"] < 200
    # the rollout ran on until every anchored episode had ended, and no further
    assert np.isfinite(curves).all() and result.dones[:, -1].any()


def test_random_stand_in_scores_zero_and_does_not_learn():
    result, summary, curves = scored(R.RandomAgent(5))
    assert within_sampling_error(curves, 0.0)  # J_rand is exact
    overall = summary["overall"]
    lo, hi = overall["gain_ci"]
    assert lo < 0 < hi
    assert overall["reach_fraction"] < 0.5
    counts = np.bincount(result.actions.ravel(), minlength=5) / result.actions.size
    assert np.abs(counts - 0.2).max() < 0.01


def test_a_policy_that_improves_gets_a_positive_gain():
    """Uniform random in the first half of the rollout, the oracle after it."""

    class Switching(R.OracleAgent):
        def policy_logits_step(self, obs, prompt, tag, prev_reward, first, state):
            logits, state = super().policy_logits_step(obs, prompt, tag, prev_reward, first, state)
            self.t = getattr(self, "t", -1) + 1
            return (logits if self.t >= STEPS // 2 else torch.zeros_like(logits)), state

    _, summary, _ = scored(Switching(kept_tasks()))
    overall = summary["overall"]
    assert overall["gain_ci"][0] > 0.5 and overall["first"] < 0.3 and overall["final"] > 0.8
    assert 0.3 < overall["auc"] < 0.7


def test_tql_ucb_is_fed_every_transition_and_beats_random():
    agent = R.TQLUCBAgent(len(kept_tasks()), 8, 5, seed=0)
    result, summary, _ = scored(agent)
    assert (agent.learner.visits.sum(axis=(1, 2)) == result.rewards.shape[1]).all()
    assert summary["overall"]["auc"] > 0.15


def test_rollout_is_seeded_and_model_shares_the_api():
    model = micro_model()
    kept = list(tasks())[:3]
    a = R.rollout(model, kept, 40, 3, (1.0, 0.1, 40), 0, 4)
    b = R.rollout(model, kept, 40, 3, (1.0, 0.1, 40), 0, 4)
    assert np.array_equal(a.actions, b.actions) and np.array_equal(a.rewards, b.rewards)
    assert a.steps == 40 and a.rewards.shape == a.dones.shape and a.rewards.shape[1] >= 40
    # the tail only finishes the episode anchored at the last anchor: some task's last step ends one
    assert (
        a.dones[:, -1].any()
        and np.isfinite(E.metrics.anchored_returns(a.rewards, a.dones, E.metrics.anchor_steps(40))).all()
    )
    with pytest.raises(BenchError, match="steps=0"):
        R.rollout(model, kept, 0, 3, (1.0, 0.1, 40), 0, 4)


def test_interactive_eval_record_follows_schema_keys():
    preset = dataclasses.replace(MICRO, recipe=dataclasses.replace(MICRO.recipe, eval_steps=400))
    record = E.interactive_eval(micro_model(), list(tasks()), preset, 0, 4, log=lambda *_: None, rollouts=2)
    assert set(record["agents"]) == {"model", "oracle", "random", "tql_ucb"}
    assert record["n_tasks"] + record["skipped_tasks"] == len(tasks())
    assert record["rollouts"] == 2 and record["rollout_seed"] == E.ROLLOUT_SEED
    assert [m for m, _ in record["rollout_noise"]["oracle"]] == [1]
    oracle, random = record["agents"]["oracle"]["overall"], record["agents"]["random"]["overall"]
    assert oracle["final"] > random["final"] + 0.5
    # the rollout seed does not depend on the training seed: a second evaluation is identical
    again = E.interactive_eval(micro_model(), list(tasks()), preset, 0, 4, log=lambda *_: None, rollouts=2)
    assert again["agents"]["random"] == record["agents"]["random"]


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
