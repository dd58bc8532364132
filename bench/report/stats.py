"""Aggregate scores, bootstrap intervals and a paired test for ranking architectures (docs/statistics.md).

The estimators of rliable (Agarwal et al., "Deep RL at the Edge of the Statistical Precipice",
NeurIPS 2021), written here in NumPy, plus a paired two-level bootstrap test and Holm's correction.

Input: one score matrix `(R runs, M tasks)` per architecture, float; the M columns are the same
tasks in the same order for every architecture (the comparisons are paired by task), while R may
differ (a baseline such as uniform random may be a single run, shape `(1, M)`). Scores must be
finite: a matrix with NaN or inf is refused, and `finite_tasks` drops the tasks (columns) that are
not finite in some matrix from all of them, so every matrix keeps the same tasks.

Every random draw comes from a `np.random.Generator`: a `seed` argument is either a non-negative
int (then `np.random.default_rng(seed)`) or a Generator (drawn from in place). Nothing here uses
NumPy's global random state, and nothing imports torch.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike

from bench.errors import BenchError

CI_LEVEL = 0.95
BOOTSTRAP_REPS = 2000
ALPHA = 0.05
CHUNK_CELLS = 2**22
"""Resampled scores held at once (the bootstrap runs in chunks of reps to bound memory); results
depend only on the inputs and the seed, not on this."""

Seed = int | np.random.Generator
Statistic = Callable[[np.ndarray], np.ndarray]
"""A function of a stack of score matrices `(..., R, M)` returning `(...)` or `(..., K)` values."""


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile bootstrap interval (floats, or arrays of one shape)."""

    point: float | np.ndarray
    lo: float | np.ndarray
    hi: float | np.ndarray


@dataclass(frozen=True)
class PairedTest:
    """The difference A - B of an aggregate (by default the mean over tasks of the per-task run
    means), its interval and its two-sided p-value (see `paired_test`)."""

    difference: float
    lo: float
    hi: float
    p_value: float
    reps: int
    df: float
    """Degrees of freedom of the t reference (method seed_t); NaN for the bootstrap methods."""


@dataclass(frozen=True)
class Comparison:
    """One pair of `pairwise_tests`: the test of a - b, its Holm-adjusted p-value and the decision."""

    a: str
    b: str
    test: PairedTest
    p_holm: float
    significant: bool


# --- input checks -------------------------------------------------------------------------------


def as_scores(scores: ArrayLike, name: str = "scores", finite: bool = True) -> np.ndarray:
    """`scores` as a float (R, M) array with R, M >= 1 (and finite values unless `finite=False`)."""
    try:
        array = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise BenchError(f"{name}: not a numeric matrix ({error}); accepted: a (runs, tasks) float matrix") from None
    if array.ndim != 2:
        raise BenchError(
            f"{name}: a {array.ndim}-D array of shape {array.shape}; accepted: a 2-D (runs, tasks) matrix "
            "(a single run is shape (1, tasks))"
        )
    if array.size == 0:
        raise BenchError(f"{name}: empty, shape {array.shape}; accepted: at least 1 run and 1 task")
    if finite and not np.isfinite(array).all():
        bad = np.flatnonzero(~np.isfinite(array).all(axis=0))
        raise BenchError(
            f"{name}: NaN or infinite scores in {bad.size} task(s) (columns {bad[:5].tolist()}"
            f"{', ...' if bad.size > 5 else ''}); accepted: finite scores (finite_tasks drops such tasks everywhere)"
        )
    return array


def _same_tasks(named: Mapping[str, np.ndarray]) -> int:
    counts = {name: array.shape[1] for name, array in named.items()}
    if len(set(counts.values())) != 1:
        listed = ", ".join(f"{name} has {m}" for name, m in counts.items())
        raise BenchError(f"task counts differ ({listed}); accepted: the same tasks (columns) in every matrix")
    return next(iter(counts.values()))


def _rng(seed: Seed, *key: str) -> np.random.Generator:
    """The Generator for `seed`; an int seed with a `key` gives a stream of its own per key (crc32 of
    the key), so that an entry's draws do not depend on the other entries."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng([int(seed), *(zlib.crc32(k.encode()) for k in key)] if key else int(seed))
    raise BenchError(f"seed={seed!r}; accepted: a non-negative int or a numpy.random.Generator")


def _check_reps_level(reps: int, level: float) -> None:
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise BenchError(f"reps={reps!r}; accepted: a positive int (e.g. {BOOTSTRAP_REPS})")
    if not 0 < level < 1:
        raise BenchError(f"level={level!r}; accepted: a coverage strictly between 0 and 1 (e.g. {CI_LEVEL})")


def finite_tasks(*scores: ArrayLike) -> tuple[np.ndarray, ...]:
    """The matrices restricted to the tasks (columns) whose scores are finite in every matrix."""
    arrays = {f"scores[{i}]": as_scores(s, f"scores[{i}]", finite=False) for i, s in enumerate(scores)}
    if not arrays:
        raise BenchError("finite_tasks: no matrix given; accepted: one or more (runs, tasks) matrices")
    _same_tasks(arrays)
    keep = np.logical_and.reduce([np.isfinite(a).all(axis=0) for a in arrays.values()])
    if not keep.any():
        raise BenchError("finite_tasks: no task is finite in every matrix; accepted: at least 1 such task")
    return tuple(a[:, keep] for a in arrays.values())


# --- aggregate metrics (on the last two axes, so that they apply to stacks of resamples) --------


def _flat(s: np.ndarray) -> np.ndarray:
    return s.reshape(*s.shape[:-2], -1)


def _iqm(s: np.ndarray) -> np.ndarray:
    return scipy.stats.trim_mean(_flat(s), 0.25, axis=-1)


def _mean(s: np.ndarray) -> np.ndarray:
    return s.mean(axis=-2).mean(axis=-1)


def _median(s: np.ndarray) -> np.ndarray:
    return np.median(s.mean(axis=-2), axis=-1)


def _optimality_gap(s: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    return gamma - np.minimum(_flat(s), gamma).mean(axis=-1)


METRICS: dict[str, Statistic] = {"iqm": _iqm, "mean": _mean, "median": _median, "optimality_gap": _optimality_gap}
"""The named aggregates of `interval_estimate` (optimality gap at gamma = 1)."""


def iqm(scores: ArrayLike) -> float:
    """Interquartile mean of all R x M scores: the mean of the middle half once the lowest and
    highest int(0.25 * R * M) are dropped (scipy.stats.trim_mean(flat, 0.25), as rliable)."""
    return float(_iqm(as_scores(scores)))


def mean(scores: ArrayLike) -> float:
    """Mean over tasks of the per-task mean over runs."""
    return float(_mean(as_scores(scores)))


def median(scores: ArrayLike) -> float:
    """Median over tasks of the per-task mean over runs."""
    return float(_median(as_scores(scores)))


def optimality_gap(scores: ArrayLike, gamma: float = 1.0) -> float:
    """gamma minus the mean of all scores clipped above at gamma: how far below gamma runs fall."""
    return float(_optimality_gap(as_scores(scores), gamma))


def score_distribution(scores: ArrayLike, taus: ArrayLike) -> np.ndarray:
    """(T,): for each threshold tau, the fraction of the R x M run-task scores above it (> tau)."""
    s = as_scores(scores).ravel()
    return (s[:, None] > _taus(taus)[None, :]).mean(axis=0)


def _taus(taus: ArrayLike) -> np.ndarray:
    t = np.asarray(taus, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.isfinite(t).all():
        raise BenchError(f"taus of shape {t.shape}; accepted: a non-empty 1-D array of finite thresholds")
    return t


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 per task, averaged over tasks; x (..., Rx, M), y (..., Ry, M)."""
    xs, ys = x[..., :, None, :], y[..., None, :, :]
    wins = (xs > ys).sum(axis=(-3, -2)) + 0.5 * (xs == ys).sum(axis=(-3, -2))
    return (wins / (x.shape[-2] * y.shape[-2])).mean(axis=-1)


def probability_of_improvement(x: ArrayLike, y: ArrayLike) -> float:
    """P(X > Y): per task, the Mann-Whitney U statistic of X's runs against Y's divided by
    R_x * R_y (the share of run pairs where X scores higher, ties counting 1/2), averaged over tasks."""
    x, y = as_scores(x, "x"), as_scores(y, "y")
    _same_tasks({"x": x, "y": y})
    return float(_poi(x, y))


# --- stratified bootstrap -----------------------------------------------------------------------


def _chunks(reps: int, cells: int) -> Iterator[tuple[int, int]]:
    size = max(1, CHUNK_CELLS // max(1, cells))
    for start in range(0, reps, size):
        yield start, min(size, reps - start)


def _draw_tasks(rng: np.random.Generator, count: int, n_tasks: int, task_bootstrap: bool) -> np.ndarray:
    """(count, M) task of each column of the resamples: the tasks themselves, or M drawn with replacement."""
    if task_bootstrap:
        return rng.integers(0, n_tasks, size=(count, n_tasks))
    return np.broadcast_to(np.arange(n_tasks), (count, n_tasks))


RUN_RESAMPLING = ("per_task", "whole", "fixed")
"""How a bootstrap draws the R runs: `per_task`, with replacement and independently for each task
(rliable's stratified bootstrap: right when every task has its own training runs); `whole`, with
replacement once per resample and the same runs for every task (right when a run is one trained model
evaluated on all tasks, so that a seed's luck is shared by its tasks); `fixed`, every run as it is."""


def _resample(scores: np.ndarray, tasks: np.ndarray, rng: np.random.Generator, runs: str = "per_task") -> np.ndarray:
    """(count, R, M): each drawn task's scores of R runs drawn as `runs` says (RUN_RESAMPLING)."""
    count, n_tasks = tasks.shape
    width = {"per_task": n_tasks, "whole": 1}.get(runs)
    if width is None:
        if runs != "fixed":
            raise BenchError(f"runs={runs!r}; accepted: {', '.join(RUN_RESAMPLING)}")
        return np.moveaxis(scores[:, tasks], 0, 1)
    drawn = rng.integers(0, scores.shape[0], size=(count, scores.shape[0], width))
    return scores[drawn, tasks[:, None, :]]


def bootstrap_distribution(
    scores: ArrayLike,
    statistic: str | Statistic = "iqm",
    reps: int = BOOTSTRAP_REPS,
    seed: Seed = 0,
    task_bootstrap: bool = False,
) -> np.ndarray:
    """(reps, ...) values of `statistic` on stratified bootstrap resamples of `scores`: within each
    task the runs are drawn with replacement, independently per task (rliable's StratifiedBootstrap);
    with `task_bootstrap` the M tasks are first drawn with replacement too (seeds and tasks)."""
    s = as_scores(scores)
    _check_reps_level(reps, CI_LEVEL)
    function = _statistic(statistic)
    rng = _rng(seed)
    parts = []
    for _, count in _chunks(reps, s.size):
        tasks = _draw_tasks(rng, count, s.shape[1], task_bootstrap)
        parts.append(np.asarray(function(_resample(s, tasks, rng))))
    return np.concatenate(parts)


def _statistic(statistic: str | Statistic) -> Statistic:
    if callable(statistic):
        return statistic
    if statistic not in METRICS:
        raise BenchError(f"metric {statistic!r}; accepted: {', '.join(METRICS)} or a function of (..., R, M) stacks")
    return METRICS[statistic]


def _percentiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail], axis=0)
    return lo, hi


def _interval(point: np.ndarray, samples: np.ndarray, level: float) -> Interval:
    lo, hi = _percentiles(samples, level)
    if np.ndim(point) == 0:
        return Interval(float(point), float(lo), float(hi))
    return Interval(np.asarray(point), lo, hi)


def interval_estimate(
    scores: ArrayLike,
    metric: str | Statistic = "iqm",
    reps: int = BOOTSTRAP_REPS,
    seed: Seed = 0,
    task_bootstrap: bool = False,
    level: float = CI_LEVEL,
) -> Interval:
    """`metric` of `scores` and its percentile interval (coverage `level`) over `reps` stratified
    bootstrap resamples (`bootstrap_distribution`): rliable's get_interval_estimates."""
    s = as_scores(scores)
    _check_reps_level(reps, level)
    point = _statistic(metric)(s)
    return _interval(point, bootstrap_distribution(s, metric, reps, seed, task_bootstrap), level)


def interval_estimates(
    scores: Mapping[str, ArrayLike],
    metric: str | Statistic = "iqm",
    reps: int = BOOTSTRAP_REPS,
    seed: Seed = 0,
    task_bootstrap: bool = False,
    level: float = CI_LEVEL,
) -> dict[str, Interval]:
    """`interval_estimate` of each named matrix (all on the same tasks). With an int seed each name
    draws from its own stream, so an entry's interval does not change when others are added."""
    arrays = _named(scores)
    return {
        name: interval_estimate(s, metric, reps, _rng(seed, name), task_bootstrap, level) for name, s in arrays.items()
    }


def _named(scores: Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
    if not isinstance(scores, Mapping) or not scores:
        raise BenchError("scores: accepted: a non-empty mapping of name -> (runs, tasks) matrix")
    arrays = {name: as_scores(s, str(name)) for name, s in scores.items()}
    _same_tasks(arrays)
    return arrays


def performance_profile(
    scores: ArrayLike,
    taus: ArrayLike,
    reps: int = BOOTSTRAP_REPS,
    seed: Seed = 0,
    task_bootstrap: bool = False,
    level: float = CI_LEVEL,
) -> Interval:
    """The score distribution (`score_distribution`) at each tau, with pointwise percentile bands
    from the stratified bootstrap: rliable's create_performance_profile (its default profile)."""
    s, t = as_scores(scores), _taus(taus)
    _check_reps_level(reps, level)
    rng = _rng(seed)
    n_runs, n_tasks = s.shape
    above = (s.ravel()[:, None] > t[None, :]).astype(np.float64)  # (R * M, T)
    samples = np.empty((reps, t.size))
    for start, count in _chunks(reps, s.size):
        # A resample's profile is a weighted mean of `above`: each cell counted as often as drawn.
        tasks = _draw_tasks(rng, count, n_tasks, task_bootstrap)
        runs = rng.integers(0, n_runs, size=(count, n_runs, n_tasks))
        cells = (runs * n_tasks + tasks[:, None, :]).reshape(count, -1) + (np.arange(count) * s.size)[:, None]
        weights = np.bincount(cells.ravel(), minlength=count * s.size).reshape(count, s.size)
        samples[start : start + count] = weights @ above / s.size
    return _interval(score_distribution(s, t), samples, level)


def probability_of_improvement_ci(
    x: ArrayLike,
    y: ArrayLike,
    reps: int = BOOTSTRAP_REPS,
    seed: Seed = 0,
    task_bootstrap: bool = False,
    level: float = CI_LEVEL,
) -> Interval:
    """`probability_of_improvement` with its percentile interval: X's and Y's runs resampled
    independently within each task (rliable's StratifiedIndependentBootstrap); with
    `task_bootstrap` the tasks are also drawn with replacement, the same draw for X and Y."""
    x, y = as_scores(x, "x"), as_scores(y, "y")
    n_tasks = _same_tasks({"x": x, "y": y})
    _check_reps_level(reps, level)
    rng = _rng(seed)
    samples = np.empty(reps)
    for start, count in _chunks(reps, x.shape[0] * y.shape[0] * n_tasks):
        tasks = _draw_tasks(rng, count, n_tasks, task_bootstrap)
        samples[start : start + count] = _poi(_resample(x, tasks, rng), _resample(y, tasks, rng))
    return _interval(_poi(x, y), samples, level)


# --- the paired test and Holm's correction ------------------------------------------------------


TEST_METHODS = ("seed_t", "bootstrap", "bootstrap_per_task")
"""The methods of `paired_test`: `seed_t` (the default) adds the seed-level and the task-level
variance of the difference and refers it to Student's t; `bootstrap` and `bootstrap_per_task` are
percentile bootstraps over tasks and whole runs, or runs drawn per task (RUN_RESAMPLING), kept to
measure what the default gains (`python -m bench calibrate`)."""


def _task_draws(
    a: np.ndarray, b: np.ndarray | None, function: Statistic, reps: int, rng: np.random.Generator, paired: bool
) -> np.ndarray:
    """(reps,) values of function(A*) - function(B*) (or function(A*) without B), where the M tasks
    are drawn with replacement (one draw for both when `paired`) and every run is kept."""
    n_tasks = a.shape[1]
    samples = np.empty(reps)
    for start, count in _chunks(reps, (a.shape[0] + (0 if b is None else b.shape[0])) * n_tasks):
        tasks_a = rng.integers(0, n_tasks, size=(count, n_tasks))
        value = function(_resample(a, tasks_a, rng, "fixed"))
        if b is not None:
            tasks_b = tasks_a if paired else rng.integers(0, n_tasks, size=(count, n_tasks))
            value = value - function(_resample(b, tasks_b, rng, "fixed"))
        samples[start : start + count] = value
    return samples


SHUFFLES = 200
"""Within-task shuffles of the runs behind `_seed_variance`'s no-seed-effect baseline."""


def _seed_variance(scores: np.ndarray, function: Statistic, rng: np.random.Generator) -> tuple[float, int]:
    """(v, R - 1): v estimates the variance that the run (seed) effect, shared by all of a run's
    tasks, adds to the metric; (0, 0) for a single run (a fixed policy, or a run whose spread is
    unknown). v = max(0, s^2 - s0^2) / R, where s^2 is the variance of the R per-run values of the
    metric and s0^2 its mean when the runs are shuffled within each task (no seed effect left): the
    per-task noise in s^2 is already in the task part of the variance, and is not counted twice."""
    runs, n_tasks = scores.shape
    if runs < 2:
        return 0.0, 0
    spread = float(np.var(function(scores[:, None, :]), ddof=1))
    order = rng.permuted(np.broadcast_to(np.arange(runs)[:, None], (SHUFFLES, runs, n_tasks)), axis=1)
    shuffled = scores[order, np.arange(n_tasks)]  # (SHUFFLES, R, M)
    baseline = float(np.var(function(shuffled[:, :, None, :]), axis=1, ddof=1).mean())
    return max(0.0, spread - baseline) / runs, runs - 1


def _t_summary(point: float, parts: list[tuple[float, int]], level: float) -> tuple[float, float, float, float]:
    """(lo, hi, p, df) of a t statistic whose squared standard error is the sum of the variance
    `parts`, each with its degrees of freedom (Welch-Satterthwaite for the total)."""
    parts = [(v, df) for v, df in parts if v > 0 and df > 0]
    variance = sum(v for v, _ in parts)
    if variance == 0:
        return point, point, float(point == 0) if np.isfinite(point) else 1.0, np.inf
    df = variance**2 / sum(v**2 / d for v, d in parts)
    se = np.sqrt(variance)
    half = float(scipy.stats.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * scipy.stats.t.sf(abs(point) / se, df))
    return point - half, point + half, p, float(df)


def _seed_t(
    a: np.ndarray,
    b: np.ndarray | None,
    function: Statistic,
    reps: int,
    rng: np.random.Generator,
    paired: bool,
    level: float,
) -> tuple[float, float, float, float, float]:
    """(point, lo, hi, p, df) of the seed-aware t test of function(A) - function(B), or of function(A)
    alone when `b` is None: the task part is the variance of `_task_draws`, with M - 1 degrees of
    freedom, plus each side's `_seed_variance`."""
    point = float(function(a) - (0.0 if b is None else function(b)))
    parts = [(float(np.var(_task_draws(a, b, function, reps, rng, paired), ddof=1)), a.shape[1] - 1)]
    parts += [_seed_variance(side, function, rng) for side in (a, b) if side is not None]
    return point, *_t_summary(point, parts, level)


def paired_test(
    a: ArrayLike,
    b: ArrayLike,
    reps: int = BOOTSTRAP_REPS,
    seed: Seed = 0,
    level: float = CI_LEVEL,
    metric: str | Statistic = "mean",
    method: str = "seed_t",
    paired: bool = True,
) -> PairedTest:
    """Is A's score different from B's? d = metric(A) - metric(B), by default the mean over tasks of
    the per-task run means (`metric="iqm"`: the interquartile means of the pooled run x task scores).

    `seed_t` (default): the squared standard error of d is the sum of a task part, the variance of
    d* over `reps` resamples of the M tasks (with replacement, one draw shared by A and B: paired;
    `paired=False` draws them apart, for comparison; all runs kept), and a seed part per side with
    R >= 2 runs, the variance of the R per-run values of the metric, less what the per-task noise
    alone gives it, divided by R (`_seed_variance`; a side with one run is a fixed policy, such as
    uniform random, and has none). t = d / se against Student's t with
    Welch-Satterthwaite degrees of freedom; the interval is d -/+ t_(df, level) se. With 3 seeds the
    seed part has 2 degrees of freedom, which is what makes the test honest when a seed's luck is
    shared by all its tasks (docs/statistics.md).

    `bootstrap` / `bootstrap_per_task`: the percentile interval of d* when the tasks are drawn as
    above and then the runs with replacement (whole runs, or per task); p = 2 * (1 + min(#{d* <= 0},
    #{d* >= 0})) / (reps + 1), capped at 1."""
    a, b = as_scores(a, "a"), as_scores(b, "b")
    n_tasks = _same_tasks({"a": a, "b": b})
    _check_reps_level(reps, level)
    function = _statistic(metric)
    if method not in TEST_METHODS:
        raise BenchError(f"method={method!r}; accepted: {', '.join(TEST_METHODS)}")
    rng = _rng(seed)
    if method == "seed_t":
        difference, lo, hi, p_value, df = _seed_t(a, b, function, reps, rng, paired, level)
        return PairedTest(difference, lo, hi, p_value, int(reps), df)
    difference = float(function(a) - function(b))
    runs = "whole" if method == "bootstrap" else "per_task"
    samples = np.empty(reps)
    for start, count in _chunks(reps, (a.shape[0] + b.shape[0]) * n_tasks):
        tasks_a = rng.integers(0, n_tasks, size=(count, n_tasks))
        tasks_b = tasks_a if paired else rng.integers(0, n_tasks, size=(count, n_tasks))
        drawn_a, drawn_b = _resample(a, tasks_a, rng, runs), _resample(b, tasks_b, rng, runs)
        samples[start : start + count] = function(drawn_a) - function(drawn_b)
    lo, hi = _percentiles(samples, level)
    extreme = min(np.count_nonzero(samples <= 0), np.count_nonzero(samples >= 0))
    p_value = min(1.0, 2 * (1 + int(extreme)) / (reps + 1))
    return PairedTest(difference, float(lo), float(hi), p_value, int(reps), np.nan)


def seed_t_interval(
    scores: ArrayLike,
    metric: str | Statistic = "iqm",
    reps: int = BOOTSTRAP_REPS,
    seed: Seed = 0,
    level: float = CI_LEVEL,
) -> Interval:
    """`metric` of `scores` and its t interval: squared standard error = the variance over `reps`
    task resamples (all runs kept) + the variance of the per-run values over R (if R >= 2), with
    Welch-Satterthwaite degrees of freedom (the one-sample form of `paired_test`'s default)."""
    _check_reps_level(reps, level)
    point, lo, hi, _p, _df = _seed_t(as_scores(scores), None, _statistic(metric), reps, _rng(seed), True, level)
    return Interval(point, lo, hi)


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order: the k-th smallest p (k = 1..m) is
    multiplied by m - k + 1, then a running maximum keeps them monotone, capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
        raise BenchError(f"p-values of shape {p.shape}: accepted: a 1-D sequence of numbers in [0, 1]")
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((p.size - np.arange(p.size)) * p[order]))
    out = np.empty_like(p)
    out[order] = adjusted
    return out


def holm_significant(p_values: ArrayLike, alpha: float = ALPHA) -> np.ndarray:
    """Which hypotheses Holm's step-down procedure rejects at family-wise error rate `alpha`."""
    if not 0 < alpha < 1:
        raise BenchError(f"alpha={alpha!r}; accepted: a level strictly between 0 and 1 (e.g. {ALPHA})")
    return holm(p_values) <= alpha


def pairwise_tests(
    scores: Mapping[str, ArrayLike],
    reps: int = BOOTSTRAP_REPS,
    seed: int = 0,
    level: float = CI_LEVEL,
    alpha: float = ALPHA,
    pairs: Sequence[tuple[str, str]] | None = None,
    metric: str | Statistic = "mean",
) -> list[Comparison]:
    """`paired_test` of `metric` for each pair (every pair a, b in the mapping's order unless `pairs`
    are given), with Holm's correction over all of them. Each pair draws from its own stream of the
    int `seed`."""
    arrays = _named(scores)
    if pairs is None:
        pairs = list(combinations(arrays, 2))
    unknown = sorted({name for pair in pairs for name in pair} - set(arrays))
    if unknown:
        raise BenchError(f"pairs name {unknown}; accepted: names of the given matrices {list(arrays)}")
    tests = [paired_test(arrays[a], arrays[b], reps, _rng(seed, a, b), level, metric=metric) for a, b in pairs]
    p_values = [t.p_value for t in tests]
    adjusted, reject = holm(p_values), holm_significant(p_values, alpha)
    return [Comparison(a, b, t, float(p), bool(r)) for (a, b), t, p, r in zip(pairs, tests, adjusted, reject)]
