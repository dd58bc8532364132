"""bench.report.stats: rliable's aggregates and bootstrap intervals, the paired test, Holm's correction."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats

from bench.errors import BenchError
from bench.report import stats

# Sorted, the 8 scores are -50, 0, 1, 2, 3, 4, 5, 100: the IQM drops 2 at each end.
HAND = np.array([[0.0, 1.0, 2.0, 100.0], [3.0, 4.0, 5.0, -50.0]])


def noise(seed: int, runs: int = 3, tasks: int = 192, sd: float = 0.3) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sd, size=(runs, tasks))


def test_aggregates_by_hand():
    assert stats.iqm(HAND) == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert stats.mean(HAND) == pytest.approx((1.5 + 2.5 + 3.5 + 25) / 4)  # mean of the task means
    assert stats.median(HAND) == pytest.approx((2.5 + 3.5) / 2)
    # min(score, 1): 0, 1, 1, 1, 1, 1, 1, -50 -> mean -5.5, gap 1 - (-5.5)
    assert stats.optimality_gap(HAND) == pytest.approx(6.5)
    assert stats.optimality_gap(HAND, gamma=3.0) == pytest.approx(3 - (0 + 1 + 2 + 3 + 3 + 3 + 3 - 50) / 8)
    # 6 scores: int(0.25 * 6) = 1 dropped at each end, as scipy.stats.trim_mean
    assert stats.iqm([[9.0, 1.0, 2.0, 3.0, 4.0, -9.0]]) == pytest.approx(2.5)


def test_probability_of_improvement_by_hand():
    x = noise(0, runs=5, tasks=20)
    assert stats.probability_of_improvement(x + 10, x) == 1.0
    assert stats.probability_of_improvement(x, x + 10) == 0.0
    assert stats.probability_of_improvement(x, x) == 0.5  # ties count 1/2
    # one task, x = (1, 2) vs y = (1, 1): pairs tie, tie, win, win -> 3/4
    assert stats.probability_of_improvement([[1.0], [2.0]], [[1.0], [1.0]]) == 0.75
    y = noise(1, runs=4, tasks=20)
    assert stats.probability_of_improvement(x, y) + stats.probability_of_improvement(y, x) == pytest.approx(1.0)
    # same distribution, many runs: close to 1/2
    assert stats.probability_of_improvement(noise(2, runs=50), noise(3, runs=50)) == pytest.approx(0.5, abs=0.02)
    ci = stats.probability_of_improvement_ci(x + 0.2, y, reps=500, seed=0)
    assert 0 <= ci.lo <= ci.point <= ci.hi <= 1


def test_holm_textbook():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert stats.holm_significant([0.01, 0.04, 0.03, 0.005]).tolist() == [True, False, False, True]
    # sorted 0.3, 0.5, 0.9 times 3, 2, 1: 0.9, 1.0, 0.9 -> running maximum 0.9, 1.0, 1.0 (capped at 1)
    np.testing.assert_allclose(stats.holm([0.5, 0.3, 0.9]), [1.0, 0.9, 1.0])
    np.testing.assert_allclose(stats.holm([0.3, 0.4, 0.6]), [0.9, 0.9, 0.9])
    np.testing.assert_allclose(stats.holm([0.02]), [0.02])
    assert stats.holm([]).size == 0


@pytest.mark.parametrize("metric", ["iqm", "mean", "median", "optimality_gap"])
@pytest.mark.parametrize("task_bootstrap", [False, True])
def test_intervals_contain_the_point(metric, task_bootstrap):
    scores = noise(4, runs=3, tasks=192, sd=1.0) + 0.5
    got = stats.interval_estimate(scores, metric, reps=1000, seed=0, task_bootstrap=task_bootstrap)
    assert got.lo < got.point < got.hi
    assert got.point == getattr(stats, metric)(scores)


def test_task_bootstrap_is_wider_when_tasks_differ():
    scores = noise(5) + np.random.default_rng(6).normal(0, 1, 192)
    runs_only = stats.interval_estimate(scores, "mean", seed=0)
    with_tasks = stats.interval_estimate(scores, "mean", seed=0, task_bootstrap=True)
    assert with_tasks.hi - with_tasks.lo > 3 * (runs_only.hi - runs_only.lo)


def test_seeded_reproducibility():
    scores = noise(7)
    first = stats.interval_estimate(scores, seed=3)
    assert stats.interval_estimate(scores, seed=3) == first
    assert stats.interval_estimate(scores, seed=4) != first
    gen = stats.interval_estimate(scores, seed=np.random.default_rng(3))
    assert (gen.lo, gen.hi) == (first.lo, first.hi)  # an int seed is default_rng(seed)
    # with several matrices, an entry's interval does not depend on the others
    both = stats.interval_estimates({"a": scores, "b": noise(8)}, seed=3)
    assert stats.interval_estimates({"a": scores}, seed=3)["a"] == both["a"]
    assert stats.paired_test(scores, noise(8), seed=1) == stats.paired_test(scores, noise(8), seed=1)
    assert stats.paired_test(scores, noise(8), seed=1) != stats.paired_test(scores, noise(8), seed=2)


def test_performance_profile():
    taus = np.linspace(-1.0, 1.0, 41)
    scores = noise(9, sd=0.5)
    profile = stats.performance_profile(scores, taus, reps=1000, seed=0)
    assert np.all(np.diff(profile.point) <= 0) and profile.point.shape == (41,)
    assert np.all(profile.lo <= profile.point) and np.all(profile.point <= profile.hi)
    assert stats.score_distribution(HAND, [-100.0, 0.0, 4.5, 100.0]).tolist() == [1.0, 6 / 8, 2 / 8, 0.0]
    for task_bootstrap in (False, True):  # the weighted form equals the mean over resampled matrices
        band = stats.performance_profile(scores, taus, reps=300, seed=5, task_bootstrap=task_bootstrap)
        direct = stats.bootstrap_distribution(
            scores, lambda s: (s.reshape(len(s), -1, 1) > taus).mean(1), 300, 5, task_bootstrap
        )
        np.testing.assert_allclose(band.lo, np.percentile(direct, 2.5, axis=0))


def test_paired_test_detects_a_shift():
    got = stats.paired_test(noise(10) + 0.2, noise(11), seed=0)
    assert got.difference == pytest.approx(0.2, abs=0.05)
    assert got.lo < got.difference < got.hi and got.lo > 0
    assert got.p_value < 0.05
    flipped = stats.paired_test(noise(11), noise(10) + 0.2, seed=0)
    assert flipped.difference == pytest.approx(-got.difference) and flipped.p_value < 0.05


def test_paired_test_calibration():
    rejected = [stats.paired_test(noise(100 + s), noise(200 + s), seed=s).p_value < 0.05 for s in range(20)]
    assert sum(rejected) <= 2
    same = stats.paired_test(noise(1), noise(1), seed=0)
    assert same.difference == 0 and same.p_value > 0.5


def test_paired_test_against_a_single_run_baseline():
    baseline = noise(12, runs=1)
    better = stats.paired_test(noise(13) + 0.1, baseline, seed=0)
    assert better.p_value < 0.05 and better.lo > 0
    assert stats.paired_test(noise(13), baseline, seed=0).p_value > 0.05


def test_pairing_gives_power_when_task_difficulty_varies():
    offset = np.random.default_rng(14).normal(0.0, 1.0, 192)  # a task's difficulty, shared by A and B
    a, b = offset + noise(15) + 0.1, offset + noise(16)
    paired = stats.paired_test(a, b, seed=0)
    unpaired = stats.paired_test(a, b, seed=0, paired=False)
    assert paired.p_value < 0.05 < unpaired.p_value
    assert (paired.hi - paired.lo) * 3 < unpaired.hi - unpaired.lo


def test_paired_test_of_the_iqm_resists_catastrophic_tasks():
    """A few catastrophic run-task scores widen the mean's interval past 0; the IQM's stays clear."""
    rng = np.random.default_rng(30)
    offset = rng.normal(0.0, 1.0, 192)
    a, b = offset + noise(31) + 0.1, offset + noise(32)
    a[:, :3] -= 12.0  # three tasks on which A fails at every run
    on_mean = stats.paired_test(a, b, seed=0)
    on_iqm = stats.paired_test(a, b, seed=0, metric="iqm")
    assert on_mean.p_value > 0.05 and on_mean.lo < 0 < on_mean.hi
    assert on_iqm.p_value < 0.05 and on_iqm.lo > 0
    assert on_iqm.difference == pytest.approx(stats.iqm(a) - stats.iqm(b))
    assert stats.paired_test(a, b, seed=0, metric="mean") == on_mean  # the default


def test_seed_t_carries_a_seed_effect_shared_by_tasks():
    """A trained model is lucky or unlucky on all tasks at once: the default test sees that spread
    (3 seeds: 2 degrees of freedom); a bootstrap drawing runs per task averages it away."""
    offset = np.random.default_rng(33).normal(0.0, 1.0, 192)
    a = offset + noise(34) + np.array([[0.1], [0.0], [0.2]])  # seed effects: mean 0.1, spread 0.1
    b = offset + noise(35) + np.array([[0.0], [0.1], [-0.1]])  # mean 0
    default = stats.paired_test(a, b, seed=0)
    assert default.p_value > 0.05 and default.lo < default.difference < default.hi and default.lo < 0
    assert 2 < default.df < 6  # the seed part dominates
    per_task = stats.paired_test(a, b, seed=0, method="bootstrap_per_task")
    assert per_task.p_value < 0.05 and (per_task.hi - per_task.lo) * 3 < default.hi - default.lo
    assert np.isnan(per_task.df) and per_task.difference == default.difference
    band = stats.seed_t_interval(a, "iqm", seed=0)
    assert band.lo < band.point < band.hi and band.point == stats.iqm(a)
    assert band.hi - band.lo > 3 * (per_task.hi - per_task.lo)


def test_seed_t_against_a_single_run_is_a_task_test():
    """A single run (a fixed policy) adds no seed part: with A a single run too, only tasks vary."""
    offset = np.random.default_rng(36).normal(0.0, 1.0, 192)
    a, b = offset + noise(37, runs=1) + 0.1, offset + noise(38, runs=1)
    got = stats.paired_test(a, b, seed=0)
    assert got.df == 191 and got.p_value < 0.05
    scale = np.std(stats._task_draws(a, b, stats.METRICS["mean"], 2000, np.random.default_rng(0), True), ddof=1)
    assert got.hi - got.lo == pytest.approx(2 * scipy.stats.t.ppf(0.975, 191) * scale)
    same = stats.paired_test(a, a, seed=0)
    assert (same.difference, same.lo, same.hi, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_pairwise_tests_with_holm():
    scores = {"a": noise(17) + 0.15, "b": noise(18), "c": noise(19, runs=1)}
    got = stats.pairwise_tests(scores, seed=0)
    assert [(c.a, c.b) for c in got] == [("a", "b"), ("a", "c"), ("b", "c")]
    np.testing.assert_allclose([c.p_holm for c in got], stats.holm([c.test.p_value for c in got]))
    assert [c.significant for c in got] == [True, True, False]


def test_finite_tasks():
    a, b = noise(20, tasks=4), noise(21, runs=1, tasks=4)
    a[1, 2], b[0, 0] = np.nan, np.inf
    kept_a, kept_b = stats.finite_tasks(a, b)
    assert kept_a.shape == (3, 2) and kept_b.shape == (1, 2)
    np.testing.assert_array_equal(kept_a, a[:, [1, 3]])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: stats.iqm(np.zeros(5)), "1-D array.*accepted: a 2-D"),
        (lambda: stats.iqm(np.zeros((2, 3, 4))), "3-D array"),
        (lambda: stats.mean(np.zeros((0, 5))), "empty"),
        (lambda: stats.median([[1.0, np.nan]]), "NaN or infinite scores in 1 task"),
        (lambda: stats.iqm([[1.0, 2.0], [3.0]]), "not a numeric matrix"),
        (lambda: stats.probability_of_improvement(np.zeros((3, 5)), np.zeros((3, 4))), "x has 5, y has 4"),
        (lambda: stats.paired_test(np.zeros((3, 5)), np.zeros((1, 6))), "task counts differ"),
        (lambda: stats.interval_estimates({"a": np.zeros((3, 5)), "b": np.zeros((3, 6))}), "task counts differ"),
        (lambda: stats.interval_estimates({}), "non-empty mapping"),
        (lambda: stats.interval_estimate(np.zeros((3, 5)), "max"), "metric 'max'"),
        (lambda: stats.interval_estimate(np.zeros((3, 5)), seed=None), "seed=None"),
        (lambda: stats.interval_estimate(np.zeros((3, 5)), reps=0), "reps=0"),
        (lambda: stats.interval_estimate(np.zeros((3, 5)), level=95), "level=95"),
        (lambda: stats.performance_profile(np.zeros((3, 5)), []), "taus"),
        (lambda: stats.holm([0.1, 1.2]), "p-values"),
        (lambda: stats.holm([0.1, np.nan]), "p-values"),
        (lambda: stats.pairwise_tests({"a": np.zeros((2, 3))}, pairs=[("a", "z")]), "pairs name"),
        (lambda: stats.paired_test(np.zeros((3, 5)), np.zeros((1, 5)), metric="max"), "metric 'max'"),
        (lambda: stats.paired_test(np.zeros((3, 5)), np.zeros((1, 5)), method="welch"), "method='welch'"),
        (lambda: stats.finite_tasks(np.full((2, 3), np.nan)), "no task is finite"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(BenchError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


def test_matches_rliable():
    """Our point estimates equal rliable's; our interval endpoints agree within bootstrap noise.
    rliable is not a dependency (docs/statistics.md): this runs only where it is installed."""
    pytest.importorskip("rliable")
    from rliable import library as rly
    from rliable import metrics as rlm

    rng = np.random.default_rng(7)
    x, y = rng.normal(0.5, 1.0, size=(5, 64)), rng.normal(0.2, 1.0, size=(4, 64))
    taus = np.linspace(-2.0, 3.0, 21)
    assert stats.iqm(x) == rlm.aggregate_iqm(x)
    assert stats.mean(x) == rlm.aggregate_mean(x)
    assert stats.median(x) == rlm.aggregate_median(x)
    assert stats.optimality_gap(x) == rlm.aggregate_optimality_gap(x)
    assert stats.optimality_gap(x, 0.5) == rlm.aggregate_optimality_gap(x, 0.5)
    assert stats.probability_of_improvement(x, y) == rlm.probability_of_improvement(x, y)
    np.testing.assert_array_equal(stats.score_distribution(x, taus), rly.score_distributions(x, taus))

    def aggregates(s):
        return np.array(
            [rlm.aggregate_iqm(s), rlm.aggregate_mean(s), rlm.aggregate_median(s), rlm.aggregate_optimality_gap(s)]
        )

    def ours(s):
        return np.stack([stats.METRICS[m](s) for m in ("iqm", "mean", "median", "optimality_gap")], axis=-1)

    state = np.random.get_state()
    try:
        np.random.seed(0)  # rliable draws from NumPy's global generator
        diffs = {}
        for task_bootstrap in (False, True):
            _, theirs = rly.get_interval_estimates({"x": x}, aggregates, task_bootstrap=task_bootstrap, reps=5000)
            mine = stats.interval_estimate(x, ours, reps=5000, seed=1, task_bootstrap=task_bootstrap)
            diffs[f"aggregates, tasks={task_bootstrap}"] = np.abs(theirs["x"] - [mine.lo, mine.hi]).max()
        _, theirs = rly.create_performance_profile({"x": x}, taus, reps=5000)
        mine = stats.performance_profile(x, taus, reps=5000, seed=1)
        diffs["profile"] = np.abs(theirs["x"] - [mine.lo, mine.hi]).max()
        few_x, few_y = x[:, :8], y[:, :8]  # rliable's PoI calls scipy per task and rep: keep it small
        poi, theirs = rly.get_interval_estimates(
            {"xy": [few_x, few_y]}, lambda a, b: np.array([rlm.probability_of_improvement(a, b)]), reps=1000
        )
        mine = stats.probability_of_improvement_ci(few_x, few_y, reps=1000, seed=1)
        assert mine.point == poi["xy"][0]
        diffs["poi"] = np.abs(theirs["xy"][:, 0] - [mine.lo, mine.hi]).max()
    finally:
        np.random.set_state(state)
    print("largest endpoint differences from rliable:", {k: round(float(v), 4) for k, v in diffs.items()})
    assert diffs["aggregates, tasks=False"] < 0.02 and diffs["aggregates, tasks=True"] < 0.02
    assert diffs["profile"] < 0.02 and diffs["poi"] < 0.04


def test_calibration_simulation():
    from bench.report import calibration

    args = calibration.Args(cases=12, reps=200, shifts=(0.0, 0.5))
    rates = calibration.calibrate(args, progress=False)
    assert len(rates) == 4 * 2 * 2  # noise x B's runs x shift
    for setting, found in rates.items():
        assert set(found) == set(calibration.TESTS)
        for (metric, method), rate in found.items():
            if setting.shift == 0.5 and not (setting.noise == "heavy" and metric == "mean"):
                assert rate == 1.0, (setting, metric, method)
            if setting.shift == 0.0 and method == "seed_t":
                assert rate <= 0.25, (setting, metric)
    assert calibration.calibrate(args, progress=False) == rates  # seeded
    text = calibration.table(rates)
    assert text.count("\n") == 1 + 4 * 2 * 2 and "| heavy | 1 | 0.5 |" in text and "iqm, bootstrap_per_task" in text
    with pytest.raises(BenchError, match="cases=0"):
        calibration.calibrate(calibration.Args(cases=0), progress=False)


def test_calibration_resumes_from_its_state_file(tmp_path, monkeypatch):
    from bench.report import calibration

    args = calibration.Args(cases=3, reps=50, shifts=(0.0,))
    whole = calibration.calibrate(args, progress=False)
    state = tmp_path / "calibration.json"
    calls = 0
    real = calibration.stats.paired_test

    def interrupted(*a, **kw):  # stops the run inside its third setting
        nonlocal calls
        calls += 1
        if calls > 2 * args.cases * len(calibration.TESTS):
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(calibration.stats, "paired_test", interrupted)
    with pytest.raises(KeyboardInterrupt):
        calibration.calibrate(args, progress=False, state=state)
    assert len(json.loads(state.read_text())["settings"]) == 2
    monkeypatch.setattr(calibration.stats, "paired_test", real)
    assert calibration.calibrate(args, progress=False, state=state) == whole
    with pytest.raises(BenchError, match="was written with"):
        calibration.calibrate(calibration.Args(cases=4, reps=50, shifts=(0.0,)), progress=False, state=state)
    state.write_text("{")
    with pytest.raises(BenchError, match="not a calibration state file"):
        calibration.calibrate(args, progress=False, state=state)
