"""The AnyMDP task generator: a vectorised NumPy re-implementation of xenoverse's sampler.

Follows `AnyMDPTaskSampler` of xenoverse 0.1.14.0 (`xenoverse/anymdp/task_sampler.py`,
`task_sampler_utils.py`, `solver.py`; Wang et al., NeurIPS 2025). Every constant below is named
after its role there; docs/anymdp.md lists them and each deliberate deviation.

Randomness comes only from a private `numpy.random.Generator` seeded with (stream, ns, na, seed);
value functions come from exact policy iteration, so filter decisions do not depend on the
tolerance of an iterative solver. All arithmetic is `bench.anymdp.portable`'s, so a task has the
same bits on every CPU, BLAS and SIMD level.

Candidates are drawn, repaired and filtered in rounds of `candidates_per_round(ns)` at once (every
array has a leading candidate axis), and the task is the first accepted candidate in draw order:
the same distribution as the official one-at-a-time loop, at a fraction of its Python overhead.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from bench.anymdp import portable as pt
from bench.anymdp.task import Task
from bench.errors import BenchError

ANYMDP_STREAM = 0x414E594D  # separates AnyMDP seeds from other generators' seeds
MIN_MDP_STATES = 8  # official minimum for ns > 1
MAX_ATTEMPTS = 100_000  # the official loop is unbounded; ours fails loudly instead
EPS = 1e-10

# horizon: max_steps ~ U(L, U), L = max(4 ns, 100), U = max(min(8 ns, 500), L + 1)
HORIZON_LOW_PER_STATE, HORIZON_LOW_MIN = 4.0, 100.0
HORIZON_HIGH_PER_STATE, HORIZON_HIGH_MAX = 8.0, 500.0
# start states: weights clip(N(0, 1), 0) over the first START_RANGE inner states
START_RANGE = 3
# terminals: pitfall rate clip(U(-0.2, 0.4), 0); goal (last inner state terminal) with prob 0.3
PITFALL_RATE_LOW, PITFALL_RATE_HIGH = -0.20, 0.40
GOAL_PROB = 0.3
# bands and action split
BAND_WEIGHT_MIN, BAND_WEIGHT_MAX = 0.10, 1.0
SELF_LOOP_FACTOR = 0.5
SIGMA_MIN, SIGMA_MAX = 0.20, 1.6
# rewards
POTENTIAL_PROB_ZERO = 0.5
POTENTIAL_MIN, POTENTIAL_MAX = 0.20, 5.0
FOURIER_MAX_ORDER, FOURIER_MAX_ITEMS = 5, 3
POSITION_SCALE = 0.2
POSITION_LAST_BONUS = 0.20
POSITION_NOISE = 0.30
SA_COST_SCALE, SA_COST_MAX = 0.05, 0.10
SA_COST_LOW, SA_COST_HIGH = -0.7, 0.3  # entry present where U(low, high) > 0: 30 %
SA_NOISE = 0.30
STEP_REWARD_SCALE = 0.01
# repair loop
REPAIR_GAMMA = 0.99
REPAIR_TRIES = 5
GOAL_MARGIN_LOW, GOAL_MARGIN_HIGH = 2.0, 5.0
PUSH_LOW, PUSH_HIGH = 1.0, 10.0
# quality filter
MIN_GAP = 2.0
MIN_GINI, MIN_ENTROPY = 0.70, 0.35
VISIT_EPS = 1e-12
POLICY_ITERATION_LIMIT = 1000
IMPROVEMENT_TOL = 1e-9


def check_int(name: str, value: object, minimum: int) -> int:
    """`value` as an int >= minimum (bool is not an int), else BenchError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise BenchError(f"{name} must be an int >= {minimum}; got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise BenchError(f"{name} must be an int >= {minimum}; got {value}")
    return int(value)


def check_ns(ns: object) -> int:
    """ns = 1 (bandit) or ns >= MIN_MDP_STATES, as the official sampler asserts."""
    ns = check_int("ns", ns, 1)
    if 1 < ns < MIN_MDP_STATES:
        raise BenchError(f"ns must be 1 (bandit) or >= {MIN_MDP_STATES}; got {ns}")
    return ns


def sample_max_steps(rng: pt.Variates, ns: int) -> float:
    """The official episode length draw; truncation happens at ceil(max_steps)."""
    if ns == 1:
        return 1.0
    low = max(HORIZON_LOW_PER_STATE * ns, HORIZON_LOW_MIN)
    high = max(min(HORIZON_HIGH_PER_STATE * ns, HORIZON_HIGH_MAX), low + 1)
    return rng.uniform(low, high)


# ---------------------------------------------------------------- exact solvers (batched)


def optimal_q(
    transition: np.ndarray, mean_reward: np.ndarray, gamma: float, policy: np.ndarray | None = None
) -> np.ndarray:
    """(k, ns, na) discounted optimal Q of tables (k, ns, na, ns) and (k, ns, na) (or (ns, na) of
    one task's tables) by policy iteration with exact evaluation, starting from `policy` (default:
    greedy on the immediate reward).

    Terminal rows of `transition` are zero, so terminal states have value 0. A state switches
    action only on a relative improvement above IMPROVEMENT_TOL, so the loop terminates; batched
    tables iterate until all have converged (a converged one recomputes the same Q).
    """
    if transition.ndim == 3:
        return optimal_q(transition[None], mean_reward[None], gamma, None if policy is None else policy[None])[0]
    k, ns = mean_reward.shape[:2]
    rows, states = np.arange(k)[:, None], np.arange(ns)[None, :]
    identity = np.eye(ns)
    policy = mean_reward.argmax(axis=2) if policy is None else policy
    for _ in range(POLICY_ITERATION_LIMIT):
        p_pi, r_pi = transition[rows, states, policy], mean_reward[rows, states, policy]
        values = pt.solve_dominant(identity - gamma * p_pi, r_pi)
        q = mean_reward + gamma * pt.dot(transition, values[:, None, None, :])
        best = q.argmax(axis=2)
        current = q[rows, states, policy]
        better = q[rows, states, best] > current + IMPROVEMENT_TOL * (1.0 + np.abs(current))
        if not better.any():
            return q
        policy = np.where(better, best, policy)
    raise BenchError("policy iteration did not converge")  # not reached: kept as a guard


def random_policy_q(transition: np.ndarray, mean_reward: np.ndarray, gamma: float) -> np.ndarray:
    """(..., ns, na) Q of the uniform-random policy (act a, then uniform random)."""
    ns = transition.shape[-1]
    values = pt.solve_dominant(np.eye(ns) - gamma * transition.mean(axis=-2), mean_reward.mean(axis=-1))
    return mean_reward + gamma * pt.dot(transition, values[..., None, None, :])


# ---------------------------------------------------------------- quality measures


@dataclass(frozen=True)
class Quality:
    """The numbers the official quality filter looks at (min over start states); floats for one
    task, arrays for a batch of candidates."""

    gap: float | np.ndarray
    """(max_a Q* - max_a Q_rand) * (1 - gamma') * horizon, gamma' = 2^(-1/ns)."""
    gini: float | np.ndarray
    """Gini impurity of the optimal policy's visit distribution after 2^K steps (terminals restart)."""
    entropy: float | np.ndarray
    """Entropy of that distribution divided by log(ns)."""

    @property
    def accepted(self) -> bool | np.ndarray:
        return (self.gap >= MIN_GAP) & (self.gini > MIN_GINI) & (self.entropy > MIN_ENTROPY)


@functools.cache
def _filter_gamma(ns: int) -> float:
    """gamma' = 2 ** (-1 / ns) of the quality filter."""
    return float(pt.exp(-pt.LN2 / ns))


def quality_of(
    transition: np.ndarray, mean_reward: np.ndarray, start: np.ndarray, terminal: np.ndarray, horizon: int
) -> Quality:
    """The official `check_valuefunction` quantities, computed exactly (ns >= 2), for one task
    (tables (ns, na, ns), ...) or a batch (a leading axis on every table: arrays in the result)."""
    if start.ndim == 1:
        batch = quality_of(transition[None], mean_reward[None], start[None], terminal[None], horizon)
        return Quality(gap=float(batch.gap[0]), gini=float(batch.gini[0]), entropy=float(batch.entropy[0]))
    ns = start.shape[-1]
    gamma = _filter_gamma(ns)
    q_opt = optimal_q(transition, mean_reward, gamma)
    q_rand = random_policy_q(transition, mean_reward, gamma)
    starts = start > 0
    scale = (1.0 - gamma) * horizon
    gap = np.where(starts, (q_opt.max(axis=-1) - q_rand.max(axis=-1)) * scale, np.inf).min(axis=-1)
    # long-run visits of the greedy policy; a terminal state restarts from the start distribution
    chain = transition[np.arange(len(start))[:, None], np.arange(ns)[None, :], q_opt.argmax(axis=-1)]
    chain = np.where(terminal[..., None], start[..., None, :], chain)
    for _ in range(horizon.bit_length()):  # floor(log2(horizon)) + 1 squarings
        chain = pt.matmul(chain, chain)
    visits = chain + VISIT_EPS  # row s: the distribution after starting in s
    gini = 1.0 - np.sum(visits * visits, axis=-1)
    entropy = -np.sum(visits * pt.log(visits), axis=-1) / float(pt.log(ns))
    return Quality(
        gap=gap,
        gini=np.where(starts, gini, np.inf).min(axis=-1),
        entropy=np.where(starts, entropy, np.inf).min(axis=-1),
    )


def task_quality(task: Task) -> Quality:
    """`quality_of` for a Task (ns >= 2)."""
    if task.ns < 2:
        raise BenchError(f"task_quality needs ns >= 2; got ns={task.ns}")
    return quality_of(task.transition, task.expected_reward, task.start, task.terminal, task.horizon)


# ---------------------------------------------------------------- generator steps (k candidates at once)


def candidates_per_round(ns: int) -> int:
    """Candidates drawn and checked together, about the number a task needs (measured: 43 at
    ns = 8, 16 at 10, 7.7 at 12, 4.1 at 16, 2.3 at 32, 1.5 at 64 and 128). Part of the generator's
    definition: it fixes the order of the draws."""
    for limit, k in ((8, 32), (10, 16), (12, 8), (16, 4), (32, 2)):
        if ns <= limit:
            return k
    return 1


def _sample_start(rng: pt.Variates, k: int, ns: int) -> np.ndarray:
    weights = np.clip(rng.standard_normal((k, START_RANGE)), 0.0, None)
    while (empty := weights.sum(axis=1) < EPS).any():
        weights[empty] = np.clip(rng.standard_normal((int(empty.sum()), START_RANGE)), 0.0, None)
    kept = np.where(weights > EPS, weights, 0.0)
    start = np.zeros((k, ns))
    start[:, :START_RANGE] = kept / kept.sum(axis=1, keepdims=True)
    return start


def _sample_terminals(rng: pt.Variates, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k, ns = start.shape
    rate = np.maximum(rng.uniform(PITFALL_RATE_LOW, PITFALL_RATE_HIGH, size=k), 0.0)
    terminal = rng.random((k, ns)) < rate[:, None]
    # the official draw rejects pitfall counts above ns * rate
    while (redraw := terminal.sum(axis=1) >= ns * rate + 1).any():
        terminal[redraw] = rng.random((int(redraw.sum()), ns)) < rate[redraw, None]
    terminal[start > 0] = False
    has_goal = rng.random(k) < GOAL_PROB
    terminal[:, -1] = has_goal
    return terminal, has_goal


def _sample_bands(rng: pt.Variates, terminal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[band_from, band_to) per (candidate, state): back up to ns//2 + 1, forward up to ns//4 + 1,
    widened until two non-terminal states lie strictly ahead (or the band reaches the end)."""
    k, ns = terminal.shape
    states = np.arange(ns)
    max_back = max(2, ns // 2 + 1)
    max_leap = max(2, ns // 4 + 1)
    from_low = np.maximum(0, states - max_back)
    from_high = np.maximum.reduce([np.zeros(ns, int), states - 1, from_low + 1])
    band_from = rng.integers(from_low, from_high, size=(k, ns))
    to_high = np.minimum(ns, states + max_leap)
    to_low = np.minimum.reduce([np.full(ns, ns - 1), states + 1, to_high - 1])
    band_to = rng.integers(to_low, to_high, size=(k, ns))
    alive_before = np.concatenate(
        [np.zeros((k, 1), int), np.cumsum(~terminal, axis=1)], axis=1
    )  # non-terminals < index
    # first index with alive_before >= alive_before[s + 1] + 2 (a search in each sorted row)
    widened = (alive_before[:, None, :] < alive_before[:, 1:, None] + 2).sum(axis=2)
    return band_from, np.minimum(ns, np.maximum(band_to, widened))


def _sample_transition(rng: pt.Variates, na: int, terminal: np.ndarray) -> np.ndarray:
    k, ns = terminal.shape
    band_from, band_to = _sample_bands(rng, terminal)
    columns = np.arange(ns)
    in_band = (columns >= band_from[..., None]) & (columns < band_to[..., None])
    # state-to-state band weights
    weights = np.clip(rng.standard_normal((k, ns, ns)), BAND_WEIGHT_MIN, BAND_WEIGHT_MAX) * in_band
    weights[:, columns, columns] *= SELF_LOOP_FACTOR
    weights[:, -1, -1] = 0.0
    weights /= weights.sum(axis=2, keepdims=True)
    # split each band across actions with Gaussian bumps around per-action centres
    centres = rng.uniform(band_from[..., None] - 1, band_to[..., None], size=(k, ns, na))
    sigma = np.clip(rng.exponential(1.0, size=(k, ns)), SIGMA_MIN, SIGMA_MAX)
    distance = np.square(centres[..., None] - columns)
    share = pt.exp(-distance / np.square(sigma)[..., None, None]) * in_band[:, :, None, :]
    lost = in_band & (share.sum(axis=2) < EPS)  # no action near this column: give it to the nearest
    cand, rows, cols = np.nonzero(lost)
    share[cand, rows, distance[cand, rows, :, cols].argmin(axis=1), cols] = 1.0
    column_sum = share.sum(axis=2, keepdims=True)
    share = np.divide(share, column_sum, out=np.zeros_like(share), where=column_sum > 0)
    transition = share * weights[:, :, None, :]
    transition[terminal] = 0.0
    row_sum = transition.sum(axis=3, keepdims=True)
    return np.divide(transition, row_sum, out=np.zeros_like(transition), where=row_sum > 0)


def _sample_potential(rng: pt.Variates, k: int, ns: int) -> np.ndarray:
    """Random Fourier potentials phi(s) (xenoverse's RandomFourier, ndim 1), (k, ns); zero 75 % of the time."""
    present = rng.random(k) >= POTENTIAL_PROB_ZERO
    base = np.where(present, np.clip(rng.exponential(1.0, size=k), POTENTIAL_MIN, POTENTIAL_MAX), 0.0)
    box = np.maximum(rng.uniform(-base, base), 0.0)
    items = rng.integers(1, FOURIER_MAX_ITEMS + 1, size=k)
    scale = box / np.sqrt(items)
    frequencies = rng.integers(1, FOURIER_MAX_ORDER + 1, size=(k, FOURIER_MAX_ITEMS)) + rng.standard_normal(
        (k, FOURIER_MAX_ITEMS)
    )
    orders = np.concatenate([np.zeros((k, 1)), frequencies], axis=1)
    used = np.arange(FOURIER_MAX_ITEMS + 1) <= items[:, None]  # the constant term and `items` waves
    magnitude = rng.exponential(1.0, size=(k, FOURIER_MAX_ITEMS + 1, 2)) * scale[:, None, None]
    coeffs = rng.standard_normal((k, FOURIER_MAX_ITEMS + 1, 2)) * magnitude * used[..., None]
    x = np.arange(ns) / (2.0 * ns)
    sin, cos = pt.sin_cos(orders[..., None] * x)
    return pt.dot(coeffs[..., 0, None], sin, axis=1) + pt.dot(coeffs[..., 1, None], cos, axis=1)


def _sample_raw_reward(
    rng: pt.Variates, na: int, terminal: np.ndarray, has_goal: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Composite reward and noise std on (candidate, s, a, s'), before the terminal arrival rewards."""
    k, ns = terminal.shape
    potential = _sample_potential(rng, k, ns)
    # position term on s': a random increasing staircase minus a baseline
    base = rng.exponential(POSITION_SCALE, size=k)[:, None]
    steps = np.clip(rng.standard_normal((k, ns)), 0.0, None)
    steps[:, -1] += POSITION_LAST_BONUS
    cdf = np.cumsum(steps * base, axis=1)
    position = cdf - rng.uniform(0.1 * cdf[:, -1:], 0.9 * cdf[:, -1:])
    position_noise = np.clip(rng.uniform(-POSITION_NOISE, POSITION_NOISE, size=(k, ns)), 0.0, None) * base
    position[terminal] = 0.0
    position_noise[terminal] = 0.0
    # sparse state-action cost
    sa_base = np.clip(rng.exponential(SA_COST_SCALE, size=k), 0.0, SA_COST_MAX)[:, None, None]
    present = rng.uniform(SA_COST_LOW, SA_COST_HIGH, size=(k, ns, na)) > 0
    sa_cost = sa_base * rng.standard_normal((k, ns, na)) * present
    sa_noise = SA_NOISE * sa_base * np.clip(rng.standard_normal((k, ns, na)), 0.0, None) * present
    # step cost with a goal, survival bonus with pitfalls only
    z = rng.standard_normal(k)
    step = (
        np.where(has_goal, np.minimum(z, 0.0), np.where(terminal.any(axis=1), np.maximum(z, 0.0), 0.0))
        * STEP_REWARD_SCALE
    )
    shaping = potential[:, :, None, None] - potential[:, None, None, :]
    reward = shaping + position[:, None, None, :] + sa_cost[..., None] + step[:, None, None, None]
    noise = np.broadcast_to(position_noise[:, None, None, :] + sa_noise[..., None], reward.shape)
    return reward, np.array(noise)


def _repair_arrival_rewards(
    rng: pt.Variates,
    transition: np.ndarray,
    raw_reward: np.ndarray,
    start: np.ndarray,
    terminal: np.ndarray,
    has_goal: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Arrival rewards per (candidate, next state) that make pitfalls worse than any other state and
    the last state worth reaching (gamma 0.99), and which candidates got there within REPAIR_TRIES
    pushes. Every try draws its margins and pushes for all candidates."""
    k, ns = terminal.shape
    arrival = np.zeros((k, ns))
    arrival[:, -1] = 1.0
    pitfalls = terminal.copy()
    pitfalls[:, -1] = False
    last_valid = np.where(has_goal, ns - 2, ns - 1)
    raw_mean = pt.dot(transition, raw_reward)
    starts = start > 0
    repaired, pending = np.zeros(k, dtype=bool), np.ones(k, dtype=bool)
    policy = None
    for _ in range(REPAIR_TRIES):
        q = optimal_q(transition, raw_mean + pt.dot(transition, arrival[:, None, None, :]), REPAIR_GAMMA, policy)
        policy, values = q.argmax(axis=2), q.max(axis=2)
        margin = rng.uniform(GOAL_MARGIN_LOW, GOAL_MARGIN_HIGH, size=k)
        pit_push, goal_push = rng.uniform(PUSH_LOW, PUSH_HIGH, size=(2, k))
        pit_gain = arrival.min(axis=1) - np.where(terminal, np.inf, values).min(axis=1) + 1.0
        goal_fall = np.where(starts, values, -np.inf).max(axis=1) - values[np.arange(k), last_valid] + margin
        done = pending & (pit_gain <= 0) & (goal_fall <= 0)
        repaired |= done
        pending &= ~done
        if not pending.any():
            break
        push_pits = (pending & (pit_gain > 0))[:, None] & pitfalls
        arrival -= np.where(push_pits, (pit_gain + pit_push)[:, None], 0.0)
        push = np.maximum(2.0 * goal_fall, goal_push)
        arrival[:, -1] += np.where(
            pending & (goal_fall > 0), np.where(has_goal, push, (1.0 - REPAIR_GAMMA) * push), 0.0
        )
    return arrival, repaired


def _sample_round(rng: pt.Variates, k: int, ns: int, na: int, horizon: int):
    """k candidates: (transition, reward, noise, start, terminal) of the first that passes repair
    and filter, or None."""
    start = _sample_start(rng, k, ns)
    terminal, has_goal = _sample_terminals(rng, start)
    transition = _sample_transition(rng, na, terminal)
    valid = ~np.any((np.abs(transition.sum(axis=3) - 1.0) > 1e-6) & ~terminal[..., None], axis=(1, 2))
    transition[~valid] = 1.0 / ns  # a stand-in the solvers accept; such candidates are never chosen
    raw_reward, noise = _sample_raw_reward(rng, na, terminal, has_goal)
    arrival, repaired = _repair_arrival_rewards(rng, transition, raw_reward, start, terminal, has_goal)
    (kept,) = np.nonzero(valid & repaired)
    if not len(kept):
        return None
    reward = raw_reward[kept] + arrival[kept, None, None, :]
    mean_reward = pt.dot(transition[kept], reward)
    accepted = quality_of(transition[kept], mean_reward, start[kept], terminal[kept], horizon).accepted
    if not accepted.any():
        return None
    first = int(np.argmax(accepted))
    i = kept[first]
    return transition[i], reward[first], noise[i], start[i], terminal[i]


def _sample_bandit(rng: pt.Variates, na: int) -> tuple[np.ndarray, np.ndarray]:
    base = float(np.clip(rng.exponential(1.0), 0.05, 2.0))
    noise_base = max(rng.uniform(-0.30, 0.30), 0.0)
    while True:
        reward = rng.uniform(0.5 * base, base, size=(1, na, 1))
        if np.std(reward) > 0.01:
            return reward, noise_base * reward


def sample_task(ns: int, na: int = 5, seed: int | None = None) -> Task:
    """One AnyMDP task with `ns` states (1: a bandit) and `na` actions, a pure function of the
    arguments: the same (ns, na, seed) gives bitwise-identical arrays in any process, on any machine."""
    ns = check_ns(ns)
    na = check_int("na", na, 2)
    seed = check_int("seed", seed, 0)
    rng = pt.Variates(np.random.default_rng([ANYMDP_STREAM, ns, na, seed]))
    max_steps = sample_max_steps(rng, ns)
    horizon = math.ceil(max_steps)
    permutation = rng.permutation(ns)
    if ns == 1:
        reward, noise = _sample_bandit(rng, na)
        return Task(
            transition=np.ones((1, na, 1)), reward=reward, reward_noise=noise, start=np.ones(1),
            terminal=np.zeros(1, bool), horizon=1, permutation=permutation, kind="bandit", seed=seed,
        )  # fmt: skip
    k = candidates_per_round(ns)
    for _ in range(MAX_ATTEMPTS // k):
        drawn = _sample_round(rng, k, ns, na, horizon)
        if drawn is not None:
            transition, reward, noise, start, terminal = drawn
            return Task(
                transition=transition, reward=reward, reward_noise=noise, start=start, terminal=terminal,
                horizon=horizon, permutation=permutation, kind="anymdp", seed=seed,
            )  # fmt: skip
    raise BenchError(f"no task passed the quality filter in {MAX_ATTEMPTS} attempts (ns={ns}, na={na}, seed={seed})")
