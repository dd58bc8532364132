"""`bench ood-table`: the metrics on synthetic episodes, the lean loop against `rollout`, the command end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench import cli
from bench.anymdp.classic import ood_instances
from bench.anymdp.solvers import TaskArrays, oracle_returns, random_returns, value_iteration
from bench.ood_table import (
    Episodes,
    Run,
    episode_scores,
    first_reach,
    greedy_returns,
    interval,
    paper_cell,
    paper_style,
    random_mc_returns,
    reach,
    run_tql_ucb,
    step_budget,
    tail_mean,
    vi_returns,
)
from bench.rollout import TQLUCBAgent, rollout


def synthetic(returns: list[list[float]], length: int) -> Run:
    """Episodes of fixed `length` steps per instance, back to back, with the given returns."""
    task = np.concatenate([np.full(len(r), i) for i, r in enumerate(returns)])
    index = np.concatenate([np.arange(len(r)) for r in returns])
    steps = max(len(r) for r in returns) * length
    ep = Episodes(task, index * length, np.concatenate(returns), index, len(returns), steps)
    return Run(ep, (index + 1) * length, np.zeros((len(returns), 1, 1)))


def test_oracle_scores_one_and_random_zero():
    j_rand, j_opt = np.array([-5.0, 0.0]), np.array([3.0, 1.0])
    run = synthetic([[3.0] * 40, [0.0] * 40], length=10)  # instance 0 at the oracle, 1 at random
    d = episode_scores(run.episodes, j_rand, j_opt)
    np.testing.assert_array_equal(tail_mean(run.episodes, d), [1.0, 0.0])


def test_performance_averages_the_episodes_starting_in_the_last_tenth():
    run = synthetic([[0.0] * 90 + [1.0] * 10], length=5)
    d = episode_scores(run.episodes, np.zeros(1), np.ones(1))
    assert tail_mean(run.episodes, d)[0] == 1.0
    assert tail_mean(run.episodes, d, fraction=0.2)[0] == 0.5


def test_reach_on_a_known_curve():
    d = np.array([0.0] * 20 + [1.0] * 30)
    assert first_reach(d, 0.95) == 29  # the first trailing window of ten ones ends at episode 29
    assert first_reach(d, 0.5) == 24  # five ones in the window ending at 24
    assert first_reach(d, math.nan) is None and first_reach(d[:5], 0.0) is None
    run = synthetic([list(d), [0.0] * 50], length=7)
    scores = episode_scores(run.episodes, np.zeros(2), np.ones(2))
    steps, episodes_ = reach(run, scores, np.array([1.0, 0.0]))
    assert (steps[0], episodes_[0]) == (30 * 7, 30)  # episode 29 ends after 30 episodes of 7 steps
    assert math.isnan(steps[1]) and math.isnan(episodes_[1])  # performance 0: no target


def test_paper_style_clips_and_interval_is_seeded():
    np.testing.assert_allclose(paper_style(np.array([-13.0, -20.0, 0.0]), -113.0, -13.0), [1.0, 0.93, 1.0])
    values = np.array([0.1, 0.5, 0.9, np.nan])
    assert interval(values, 3) == interval(values, 3)
    lo, hi = interval(values, 3)
    assert 0.1 <= lo < 0.5 < hi <= 0.9
    assert all(math.isnan(v) for v in interval(np.full(3, np.nan), 3))


def test_budgets_follow_the_papers_steps():
    assert paper_cell("pendulum-g5") == (0.997, 426_000.0, 2_130.0)
    assert step_budget("garnet-16-5-2", 1.0) == 603_000  # 2.5 x 241K
    assert step_budget("cliffwalking", 1.0) == 20_000  # at least 20K
    assert step_budget("pendulum-g9.8", 0.01) == 50_000


@pytest.mark.parametrize("name", ["garnet-16-5-2", "frozenlake-4x4-slippery"])
def test_lean_loop_gives_the_episodes_of_rollout(name):
    tasks = ood_instances(name, 3)
    reference = rollout(TQLUCBAgent(3, tasks[0].ns, tasks[0].na, 7), tasks, 600, 5, (1.0, 1.0, 0), 0, 0)
    run = run_tql_ucb(tasks, 600, 5, np.random.default_rng(7))
    for i in range(3):  # the rollout's episodes that start before step 600, by hand
        ends = np.flatnonzero(reference.dones[i])
        starts = np.concatenate([[0], ends[:-1] + 1])
        returns = np.add.reduceat(reference.rewards[i], starts)[: ends.size]
        mine = np.flatnonzero(run.episodes.task == i)
        assert run.episodes.index[mine].tolist() == list(range(mine.size))
        # the rollout may stop before the episode open at step 600 ends (once its anchored episode has)
        n = (starts < 600).sum()
        assert n >= mine.size - 1
        np.testing.assert_array_equal(run.episodes.start[mine[:n]], starts[:n])
        np.testing.assert_allclose(run.episodes.ret[mine[:n]], returns[:n], rtol=1e-12)
    recorded = run.end <= reference.dones.shape[1]
    assert reference.dones[run.episodes.task[recorded], run.end[recorded] - 1].all()  # ends where rollout's do


def test_random_and_discounted_references():
    tasks = ood_instances("frozenlake-4x4", 4)
    arrays = TaskArrays.stack(tasks)
    mc = random_mc_returns(tasks, 500, 1, np.random.default_rng(2))
    np.testing.assert_allclose(mc.mean(), random_returns(arrays)[0], atol=0.01)
    np.testing.assert_allclose(vi_returns(arrays), oracle_returns(arrays))  # a deterministic 6-step path
    cliff = TaskArrays.stack(ood_instances("cliffwalking", 1))
    assert vi_returns(cliff)[0] == -13.0


def test_greedy_returns_read_q_tables_by_observation_id():
    tasks = ood_instances("garnet-16-5-2", 3)  # permuted observations
    arrays = TaskArrays.stack(tasks)
    q_inner = value_iteration(arrays, 0.99)
    q_obs = np.zeros_like(q_inner)
    for b, task in enumerate(tasks):
        q_obs[b, task.permutation] = q_inner[b]
    np.testing.assert_array_equal(greedy_returns(tasks, q_obs), vi_returns(arrays))
    assert np.all(greedy_returns(tasks, -q_obs) < vi_returns(arrays))


def test_command_end_to_end(tmp_path, capsys):
    out, doc = tmp_path / "ood.json", tmp_path / "ood.md"
    argv = ["ood-table", "--tasks", "cliffwalking", "darkroom-6x6", "--scale", "0.05", "--instances", "2"]
    assert cli.main([*argv, "--out", str(out), "--doc", str(doc), "--no-progress"]) == 0
    results = json.loads(out.read_text())
    assert list(results["tasks"]) == ["cliffwalking", "darkroom-6x6"]
    cliff = results["tasks"]["cliffwalking"]
    assert cliff["steps"] == 1000 and cliff["j_opt"] == [-13.0, -13.0]
    assert len(cliff["performance_per_instance"]) == 2 and "paper_style" in cliff
    assert "paper_style" not in results["tasks"]["darkroom-6x6"]
    page = doc.read_text()
    assert f"from `{out}`" in page and "| `darkroom-6x6`" in page and "100%/3.1K/35" in page
    again = tmp_path / "again.md"
    assert cli.main(["ood-table", "--from-json", str(out), "--doc", str(again)]) == 0
    assert again.read_text() == page


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tasks", "switch2"], "unknown task 'switch2'"),
        (["--scale", "0"], "--scale 0.0"),
        (["--instances", "0"], "--instances 0"),
        (["--from-json", "/nonexistent/ood.json"], "cannot read"),
    ],
)
def test_bad_input_is_one_line(extra, message, capsys, tmp_path):
    assert cli.main(["ood-table", *extra, "--out", str(tmp_path / "x.json"), "--doc", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x.json").exists()
