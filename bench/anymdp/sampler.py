"""The AnyMDP task generator: a vectorised NumPy re-implementation of xenoverse's sampler.

Follows `AnyMDPTaskSampler` of xenoverse 0.1.14.0 (`xenoverse/anymdp/task_sampler.py`,
`task_sampler_utils.py`, `solver.py`; Wang et al., NeurIPS 2025). Every constant below is named
after its role there; docs/anymdp.md lists them and each deliberate deviation.

Randomness comes only from a private `numpy.random.Generator` seeded with (stream, ns, na, seed);
value functions come from exact policy iteration, so filter decisions do not depend on the
tolerance of an iterative solver. All arithmetic is `bench.anymdp.portable`'s, so a task has the
same bits on every CPU, BLAS and SIMD level.
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


# ---------------------------------------------------------------- exact solvers (one task)


def _policy_values(transition: np.ndarray, mean_reward: np.ndarray, gamma: float, policy: np.ndarray) -> np.ndarray:
    states = np.arange(transition.shape[0])
    p_pi = transition[states, policy]
    r_pi = mean_reward[states, policy]
    return pt.solve_dominant(np.eye(len(states)) - gamma * p_pi, r_pi)


def optimal_q(
    transition: np.ndarray, mean_reward: np.ndarray, gamma: float, policy: np.ndarray | None = None
) -> np.ndarray:
    """(ns, na) discounted optimal Q by policy iteration with exact evaluation, starting from
    `policy` (default: greedy on the immediate reward).

    Terminal rows of `transition` are zero, so terminal states have value 0. A state switches
    action only on a relative improvement above IMPROVEMENT_TOL, so the loop terminates.
    """
    states = np.arange(transition.shape[0])
    policy = mean_reward.argmax(axis=1) if policy is None else policy
    for _ in range(POLICY_ITERATION_LIMIT):
        q = mean_reward + gamma * pt.dot(transition, _policy_values(transition, mean_reward, gamma, policy))
        best = q.argmax(axis=1)
        current = q[states, policy]
        better = q[states, best] > current + IMPROVEMENT_TOL * (1.0 + np.abs(current))
        if not better.any():
            return q
        policy = np.where(better, best, policy)
    raise BenchError("policy iteration did not converge")  # not reached: kept as a guard


def random_policy_q(transition: np.ndarray, mean_reward: np.ndarray, gamma: float) -> np.ndarray:
    """(ns, na) Q of the uniform-random policy (act a, then uniform random)."""
    ns = transition.shape[0]
    values = pt.solve_dominant(np.eye(ns) - gamma * transition.mean(axis=1), mean_reward.mean(axis=1))
    return mean_reward + gamma * pt.dot(transition, values)


# ---------------------------------------------------------------- quality measures


@dataclass(frozen=True)
class Quality:
    """The numbers the official quality filter looks at (min over start states)."""

    gap: float
    """(max_a Q* - max_a Q_rand) * (1 - gamma') * horizon, gamma' = 2^(-1/ns)."""
    gini: float
    """Gini impurity of the optimal policy's visit distribution after 2^K steps (terminals restart)."""
    entropy: float
    """Entropy of that distribution divided by log(ns)."""

    @property
    def accepted(self) -> bool:
        return self.gap >= MIN_GAP and self.gini > MIN_GINI and self.entropy > MIN_ENTROPY


@functools.cache
def _filter_gamma(ns: int) -> float:
    """gamma' = 2 ** (-1 / ns) of the quality filter."""
    return float(pt.exp(-pt.LN2 / ns))


def quality_of(
    transition: np.ndarray, mean_reward: np.ndarray, start: np.ndarray, terminal: np.ndarray, horizon: int
) -> Quality:
    """The official `check_valuefunction` quantities, computed exactly (ns >= 2)."""
    ns = transition.shape[0]
    gamma = _filter_gamma(ns)
    q_opt = optimal_q(transition, mean_reward, gamma)
    q_rand = random_policy_q(transition, mean_reward, gamma)
    starts = np.flatnonzero(start > 0)
    scale = (1.0 - gamma) * horizon
    gap = float(np.min((q_opt[starts].max(axis=1) - q_rand[starts].max(axis=1)) * scale))
    # long-run visits of the greedy policy; a terminal state restarts from the start distribution
    chain = transition[np.arange(ns), q_opt.argmax(axis=1)].copy()
    chain[terminal] = start
    for _ in range(horizon.bit_length()):  # floor(log2(horizon)) + 1 squarings
        chain = pt.matmul(chain, chain)
    visits = chain[starts] + VISIT_EPS
    gini = 1.0 - np.sum(visits * visits, axis=1)
    entropy = -np.sum(visits * pt.log(visits), axis=1) / float(pt.log(ns))
    return Quality(gap=gap, gini=float(gini.min()), entropy=float(entropy.min()))


def task_quality(task: Task) -> Quality:
    """`quality_of` for a Task (ns >= 2)."""
    if task.ns < 2:
        raise BenchError(f"task_quality needs ns >= 2; got ns={task.ns}")
    return quality_of(task.transition, task.expected_reward, task.start, task.terminal, task.horizon)


# ---------------------------------------------------------------- generator steps


def _sample_start(rng: pt.Variates, ns: int) -> np.ndarray:
    weights = np.zeros(START_RANGE)
    while weights.sum() < EPS:
        weights = np.clip(rng.standard_normal(START_RANGE), 0.0, None)
    start = np.zeros(ns)
    start[:START_RANGE] = np.where(weights > EPS, weights, 0.0) / weights[weights > EPS].sum()
    return start


def _sample_terminals(rng: pt.Variates, ns: int, start: np.ndarray) -> tuple[np.ndarray, bool]:
    rate = max(rng.uniform(PITFALL_RATE_LOW, PITFALL_RATE_HIGH), 0.0)
    while True:  # the official draw rejects pitfall counts above ns * rate
        terminal = rng.random(ns) < rate
        if terminal.sum() < ns * rate + 1:
            break
    terminal[start > 0] = False
    has_goal = bool(rng.random() < GOAL_PROB)
    terminal[-1] = has_goal
    return terminal, has_goal


def _sample_bands(rng: pt.Variates, ns: int, terminal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[band_from, band_to) per state: back up to ns//2 + 1, forward up to ns//4 + 1, widened until
    two non-terminal states lie strictly ahead (or the band reaches the end)."""
    states = np.arange(ns)
    max_back = max(2, ns // 2 + 1)
    max_leap = max(2, ns // 4 + 1)
    from_low = np.maximum(0, states - max_back)
    from_high = np.maximum.reduce([np.zeros(ns, int), states - 1, from_low + 1])
    band_from = rng.integers(from_low, from_high)
    to_high = np.minimum(ns, states + max_leap)
    to_low = np.minimum.reduce([np.full(ns, ns - 1), states + 1, to_high - 1])
    band_to = rng.integers(to_low, to_high)
    alive_before = np.concatenate([[0], np.cumsum(~terminal)])  # alive_before[k]: non-terminals < k
    widened = np.searchsorted(alive_before, alive_before[states + 1] + 2, side="left")
    band_to = np.minimum(ns, np.maximum(band_to, widened))
    return band_from, band_to


def _sample_transition(rng: pt.Variates, ns: int, na: int, terminal: np.ndarray) -> np.ndarray:
    band_from, band_to = _sample_bands(rng, ns, terminal)
    columns = np.arange(ns)
    in_band = (columns >= band_from[:, None]) & (columns < band_to[:, None])
    # state-to-state band weights
    weights = np.clip(rng.standard_normal((ns, ns)), BAND_WEIGHT_MIN, BAND_WEIGHT_MAX) * in_band
    weights[columns, columns] *= SELF_LOOP_FACTOR
    weights[-1, -1] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    # split each band across actions with Gaussian bumps around per-action centres
    centres = rng.uniform(band_from[:, None] - 1, band_to[:, None], size=(ns, na))
    sigma = np.clip(rng.exponential(1.0, size=ns), SIGMA_MIN, SIGMA_MAX)
    distance = (centres[:, :, None] - columns[None, None, :]) ** 2
    share = pt.exp(-distance / sigma[:, None, None] ** 2) * in_band[:, None, :]
    lost = in_band & (share.sum(axis=1) < EPS)  # no action near this column: give it to the nearest
    rows, cols = np.nonzero(lost)
    share[rows, distance[rows, :, cols].argmin(axis=1), cols] = 1.0
    column_sum = share.sum(axis=1, keepdims=True)
    share = np.divide(share, column_sum, out=np.zeros_like(share), where=column_sum > 0)
    transition = share * weights[:, None, :]
    transition[terminal] = 0.0
    row_sum = transition.sum(axis=2, keepdims=True)
    return np.divide(transition, row_sum, out=np.zeros_like(transition), where=row_sum > 0)


def _sample_potential(rng: pt.Variates, ns: int) -> np.ndarray:
    """Random Fourier potential phi(s) (xenoverse's RandomFourier, ndim 1); zero 75 % of the time."""
    base = 0.0
    if rng.random() >= POTENTIAL_PROB_ZERO:
        base = float(np.clip(rng.exponential(1.0), POTENTIAL_MIN, POTENTIAL_MAX))
    box = max(rng.uniform(-base, base), 0.0)
    items = int(rng.integers(1, FOURIER_MAX_ITEMS + 1))
    scale = box / math.sqrt(items)
    orders = np.concatenate([[0.0], rng.integers(1, FOURIER_MAX_ORDER + 1, size=items) + rng.standard_normal(items)])
    coeffs = rng.standard_normal((items + 1, 2)) * rng.exponential(scale, size=(items + 1, 2))
    x = np.arange(ns) / (2.0 * ns)
    angles = orders[:, None] * x[None, :]
    sin, cos = pt.sin_cos(angles)
    return pt.dot(coeffs[:, 0, None], sin, axis=0) + pt.dot(coeffs[:, 1, None], cos, axis=0)


def _sample_raw_reward(
    rng: pt.Variates, ns: int, na: int, terminal: np.ndarray, has_goal: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Composite reward and noise std on (s, a, s'), before the terminal arrival rewards."""
    potential = _sample_potential(rng, ns)
    # position term on s': a random increasing staircase minus a baseline
    base = rng.exponential(POSITION_SCALE)
    steps = np.clip(rng.standard_normal(ns), 0.0, None)
    steps[-1] += POSITION_LAST_BONUS
    cdf = np.cumsum(steps * base)
    position = cdf - rng.uniform(0.1 * cdf[-1], 0.9 * cdf[-1])
    position_noise = np.clip(rng.uniform(-POSITION_NOISE, POSITION_NOISE, size=ns), 0.0, None) * base
    position[terminal] = 0.0
    position_noise[terminal] = 0.0
    # sparse state-action cost
    sa_base = float(np.clip(rng.exponential(SA_COST_SCALE), 0.0, SA_COST_MAX))
    present = rng.uniform(SA_COST_LOW, SA_COST_HIGH, size=(ns, na)) > 0
    sa_cost = sa_base * rng.standard_normal((ns, na)) * present
    sa_noise = SA_NOISE * sa_base * np.clip(rng.standard_normal((ns, na)), 0.0, None) * present
    # step cost with a goal, survival bonus with pitfalls only
    if has_goal:
        step = min(rng.standard_normal(), 0.0) * STEP_REWARD_SCALE
    elif terminal.any():
        step = max(rng.standard_normal(), 0.0) * STEP_REWARD_SCALE
    else:
        step = 0.0
    shaping = potential[:, None, None] - potential[None, None, :]
    reward = shaping + position[None, None, :] + sa_cost[:, :, None] + step
    noise = np.broadcast_to(position_noise[None, None, :] + sa_noise[:, :, None], (ns, na, ns))
    return reward, np.array(noise)


def _repair_arrival_rewards(
    rng: pt.Variates,
    transition: np.ndarray,
    raw_reward: np.ndarray,
    start: np.ndarray,
    terminal: np.ndarray,
    has_goal: bool,
) -> np.ndarray | None:
    """Arrival rewards per next state that make pitfalls worse than any other state and the last
    state worth reaching (gamma 0.99), or None after REPAIR_TRIES failed pushes."""
    ns = transition.shape[0]
    arrival = np.zeros(ns)
    arrival[-1] = 1.0
    pitfalls = terminal.copy()
    pitfalls[-1] = False
    last_valid = ns - 2 if has_goal else ns - 1
    raw_mean = pt.dot(transition, raw_reward)
    starts = start > 0
    policy = None
    for _ in range(REPAIR_TRIES):
        q = optimal_q(transition, raw_mean + pt.dot(transition, arrival), REPAIR_GAMMA, policy)
        policy, values = q.argmax(axis=1), q.max(axis=1)
        pit_gain = arrival.min() - values[~terminal].min() + 1.0
        goal_fall = values[starts].max() - values[last_valid] + rng.uniform(GOAL_MARGIN_LOW, GOAL_MARGIN_HIGH)
        if pit_gain <= 0 and goal_fall <= 0:
            return arrival
        if pit_gain > 0:
            arrival[pitfalls] -= pit_gain + rng.uniform(PUSH_LOW, PUSH_HIGH)
        if goal_fall > 0:
            push = max(2.0 * goal_fall, rng.uniform(PUSH_LOW, PUSH_HIGH))
            arrival[-1] += push if has_goal else (1.0 - REPAIR_GAMMA) * push
    return None


def _sample_mdp(rng: pt.Variates, ns: int, na: int, horizon: int):
    """One attempt: (transition, reward, noise, start, terminal) or None if repair or filter fails."""
    start = _sample_start(rng, ns)
    terminal, has_goal = _sample_terminals(rng, ns, start)
    transition = _sample_transition(rng, ns, na, terminal)
    if np.any(np.abs(transition.sum(axis=2)[~terminal] - 1.0) > 1e-6):
        return None
    raw_reward, noise = _sample_raw_reward(rng, ns, na, terminal, has_goal)
    arrival = _repair_arrival_rewards(rng, transition, raw_reward, start, terminal, has_goal)
    if arrival is None:
        return None
    reward = raw_reward + arrival[None, None, :]
    mean_reward = pt.dot(transition, reward)
    if not quality_of(transition, mean_reward, start, terminal, horizon).accepted:
        return None
    return transition, reward, noise, start, terminal


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
    for _ in range(MAX_ATTEMPTS):
        drawn = _sample_mdp(rng, ns, na, horizon)
        if drawn is not None:
            transition, reward, noise, start, terminal = drawn
            return Task(
                transition=transition, reward=reward, reward_noise=noise, start=start, terminal=terminal,
                horizon=horizon, permutation=permutation, kind="anymdp", seed=seed,
            )  # fmt: skip
    raise BenchError(f"no task passed the quality filter in {MAX_ATTEMPTS} attempts (ns={ns}, na={na}, seed={seed})")
