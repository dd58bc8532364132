"""The out-of-distribution tasks of OmniRL's Table 1 as exact tabular `Task` records.

Sources (read, not copied; docs/ood.md has the full definitions and our choices):

- CliffWalking, FrozenLake, Pendulum: the installed gymnasium 1.4.0, whose dynamics are those of
  Farama-Foundation/Gymnasium v1.3.0 (commit 53bf3e9a884783eb72ad3fc8b15780914c97c3e1), files
  `gymnasium/envs/toy_text/cliffwalking.py`, `gymnasium/envs/toy_text/frozen_lake.py`,
  `gymnasium/envs/classic_control/pendulum.py`, limits in `gymnasium/envs/__init__.py`. The two
  grid tasks are read from gymnasium's own tables (`unwrapped.P`, `initial_state_distrib`).
- How OmniRL wraps them, and Darkroom: airs-cuhk/airsoul commit
  d8b43a07c46e7ff27d93439c80960fd133f49dcf, `projects/OmniRL/gym_env_wapper.py`
  (`DiscreteEnvWrapper`, `DarkroomEnv`; unchanged since 94287925245da893d05acca7d6afc4ba9ef46e13)
  and `projects/OmniRL/omnirl_epoch.py` (the `task_sampler_*` methods; last changed in
  1d1ed21cf5f23cdfb825ce2fb00bec01218097bb).

Every task here is observed through raw state ids (identity permutation), as OmniRL feeds them,
and has no reward noise. Garnet(16, 5, 2) and Garnet(64, 5, 2) are `sample_garnet` tasks.
Switch2 is not provided: it is a two-agent task (two model copies act at once), outside a
single-agent harness and a single-agent exact oracle, and its step limit and normalisation are
unpublished.

CliffWalking: gymnasium sends a step into the cliff back to the start (reward -100) without
ending the episode; OmniRL's wrapper ends the episode on any reward below -50. An episode that
ends is an entry into a terminal state here, so the cliff is one extra absorbing state (id 48)
that every cliff step enters with reward -100. Returns and optimal values are the same as
under the wrapper; only the last observation differs (48 here, 36 there).

Pendulum: gymnasium's continuous Pendulum-v1 seen through airsoul's 12 x 5 grid of cells is not
Markov, so P and R are built by deterministic quadrature: a regular sub-grid of points inside
each cell, each stepped exactly once. The table is an approximation of the continuous system
(docs/ood.md says how close). Only portable arithmetic (elementwise IEEE operations,
`bench.anymdp.portable`) defines it, so it has the same bits on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import gymnasium
import numpy as np

from bench.anymdp import portable as pt
from bench.anymdp.garnet import sample_garnet
from bench.anymdp.sampler import check_int
from bench.anymdp.task import Task
from bench.errors import BenchError

CLIFF_CUTOFF = -50.0
"""OmniRL's wrapper ends a CliffWalking episode on a reward below this (the -100 of the cliff)."""
CLIFF_STATE = 48
"""The absorbing terminal state that stands for the cliff (gymnasium's states are 0..47)."""
PENDULUM_DT = 0.05
PENDULUM_MAX_SPEED = 8.0
PENDULUM_TORQUES = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
"""airsoul's action map: torque = -2 + a * 4 / (5 - 1) N m for a = 0..4."""
PENDULUM_RESET_SPEED = 1.0
"""gymnasium's default reset: theta ~ U[-pi, pi], thetadot ~ U[-1, 1]."""
DARKROOM_MOVES = ((1, 0), (-1, 0), (0, 1), (0, -1))
"""airsoul's DarkroomEnv actions as (row, column) steps: 0 row+1, 1 row-1, 2 col+1, 3 col-1."""
DARKROOM_STEP_REWARD = -0.01


def _check_horizon(horizon: object) -> int:
    return check_int("horizon", horizon, 1)


def _from_table(table: dict, start: np.ndarray, ns: int, horizon: int, kind: str) -> Task:
    """A Task from gymnasium's `P[s][a]` lists of (prob, next_state, reward, terminated).

    Duplicate outcomes are summed (R is their probability-weighted mean reward); a state is
    terminal when entering it ends the episode, and its rows are cleared.
    """
    na = len(table[0])
    transition, weighted = np.zeros((ns, na, ns)), np.zeros((ns, na, ns))
    ends, continues = np.zeros(ns, dtype=bool), np.zeros(ns, dtype=bool)
    for s, actions in table.items():
        for a, outcomes in actions.items():
            for probability, next_state, reward, terminated in outcomes:
                transition[s, a, next_state] += probability
                weighted[s, a, next_state] += probability * reward
                (ends if terminated else continues)[next_state] = True
    if np.any(ends & continues):
        raise BenchError(f"{kind}: entering states {np.flatnonzero(ends & continues)} both ends and continues")
    reward = np.divide(weighted, transition, out=np.zeros_like(weighted), where=transition > 0)
    transition[ends], reward[ends] = 0.0, 0.0
    return Task(
        transition=transition, reward=reward, reward_noise=np.zeros((ns, na, ns)), start=start, terminal=ends,
        horizon=horizon, permutation=np.arange(ns), kind=kind,
    )  # fmt: skip


def cliffwalking(horizon: int = 200) -> Task:
    """gymnasium CliffWalking-v1 (4 x 12, 4 actions, -1 a step) where the cliff ends the episode.

    49 states: gymnasium's 48 (goal 47 terminal) and the cliff state 48 (terminal, entered with
    -100). Horizon 200 is OmniRL's config default; Table 1's step limit is unpublished.
    """
    horizon = _check_horizon(horizon)
    env = gymnasium.make("CliffWalking-v1").unwrapped
    table = {
        s: {
            a: [(p, CLIFF_STATE, r, True) if r < CLIFF_CUTOFF else (p, n, r, t) for p, n, r, t in outcomes]
            for a, outcomes in actions.items()
        }
        for s, actions in env.P.items()
    }
    start = np.append(env.initial_state_distrib, 0.0)
    return _from_table(table, start, CLIFF_STATE + 1, horizon, "cliffwalking")


def frozenlake(slippery: bool, horizon: int = 100) -> Task:
    """gymnasium FrozenLake-v1 on the 4x4 map: 16 states, 4 actions, +1 entering the goal 15;
    holes and goal end the episode. Horizon 100 is gymnasium's registered limit (OmniRL raises
    it to 1000, capped by its own max_steps)."""
    if not isinstance(slippery, bool):
        raise BenchError(f"slippery must be True or False; got {slippery!r}")
    horizon = _check_horizon(horizon)
    env = gymnasium.make("FrozenLake-v1", map_name="4x4", is_slippery=slippery).unwrapped
    return _from_table(env.P, np.asarray(env.initial_state_distrib), len(env.P), horizon, "frozenlake")


def darkroom(dim: int, horizon: int = 200) -> Task:
    """airsoul's DarkroomEnv: a dim x dim grid, state row * dim + col, 4 moves clipped to the grid,
    goal (dim-1, dim-1) entered with +1 (terminal), -0.01 on every other step, start uniform over
    the other cells. Horizon 200 is OmniRL's config default; Table 1's is unpublished."""
    dim = check_int("dim", dim, 2)
    horizon = _check_horizon(horizon)
    ns, na = dim * dim, len(DARKROOM_MOVES)
    goal = ns - 1
    row, col = np.divmod(np.arange(ns), dim)
    moved = np.stack(
        [np.clip(row + dr, 0, dim - 1) * dim + np.clip(col + dc, 0, dim - 1) for dr, dc in DARKROOM_MOVES], axis=1
    )  # (ns, na) next state
    states, actions = np.arange(ns)[:, None], np.arange(na)[None, :]
    transition, reward = np.zeros((ns, na, ns)), np.zeros((ns, na, ns))
    transition[states, actions, moved] = 1.0
    reward[states, actions, moved] = np.where(moved == goal, 1.0, DARKROOM_STEP_REWARD)
    terminal = np.arange(ns) == goal
    transition[goal], reward[goal] = 0.0, 0.0
    start = np.where(terminal, 0.0, 1.0 / (ns - 1))
    return Task(
        transition=transition, reward=reward, reward_noise=np.zeros((ns, na, ns)), start=start, terminal=terminal,
        horizon=horizon, permutation=np.arange(ns), kind="darkroom",
    )  # fmt: skip


def _bin(value: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """airsoul's `map_to_discrete`: the bin of `value` clipped to [edges[0], edges[-1]]."""
    clipped = np.clip(value, edges[0], edges[-1])
    return np.clip(np.digitize(clipped, edges) - 1, 0, len(edges) - 2)


def pendulum(
    g: float, angle_bins: int = 12, velocity_bins: int = 5, horizon: int = 200, samples_per_axis: int = 16
) -> Task:
    """The Discrete-Pendulum: gymnasium Pendulum-v1 with gravity g (dt 0.05, m = l = 1, speed in
    [-8, 8], torques -2..2) on airsoul's cells, state velocity_bins * angle_bin + velocity_bin.

    Angle bins split theta in [0, 2 pi), velocity bins split [-8, 8], both in equal parts. Each
    cell's (theta, thetadot) is sampled at the centres of a samples_per_axis^2 sub-grid, and each
    sample takes one exact step per action: P[s, a, s'] is the fraction landing in s' and
    R[s, a, s'] their mean reward -(theta^2 + 0.1 thetadot^2 + 0.001 u^2), theta taken in
    [-pi, pi) (0 where P is 0). The start is gymnasium's default reset by exact area
    fractions. No terminal states; horizon 200 is gymnasium's registered limit.
    """
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g < 0:
        raise BenchError(f"g must be a finite number >= 0; got {g!r}")
    angle_bins = check_int("angle_bins", angle_bins, 1)
    velocity_bins = check_int("velocity_bins", velocity_bins, 1)
    horizon = _check_horizon(horizon)
    n = check_int("samples_per_axis", samples_per_axis, 1)
    angle_edges = pt.TWO_PI * np.arange(angle_bins + 1) / angle_bins
    speed_edges = -PENDULUM_MAX_SPEED + 2.0 * PENDULUM_MAX_SPEED * np.arange(velocity_bins + 1) / velocity_bins
    offsets = (np.arange(n) + 0.5) / n  # sub-cell centres as fractions of a cell

    def centres(edges: np.ndarray) -> np.ndarray:  # (bins, n)
        return edges[:-1, None] + (edges[1:] - edges[:-1])[:, None] * offsets

    ns, na = angle_bins * velocity_bins, len(PENDULUM_TORQUES)
    # samples of state v * i + j (angle bin i, velocity bin j): shape (ns, 1, n * n), axes broadcast with actions
    shape = (angle_bins, velocity_bins, n, n)
    theta = np.broadcast_to(centres(angle_edges)[:, None, :, None], shape).reshape(ns, 1, n * n)
    speed = np.broadcast_to(centres(speed_edges)[None, :, None, :], shape).reshape(ns, 1, n * n)
    torque = PENDULUM_TORQUES[None, :, None]
    normalized = np.where(theta >= np.pi, theta - pt.TWO_PI, theta)  # in [-pi, pi)
    cost = normalized * normalized + 0.1 * (speed * speed) + 0.001 * (torque * torque)
    sin_theta = pt.sin_cos(theta)[0]
    new_speed = np.clip(
        speed + (3.0 * g / 2.0 * sin_theta + 3.0 * torque) * PENDULUM_DT, -PENDULUM_MAX_SPEED, PENDULUM_MAX_SPEED
    )
    new_theta = theta + new_speed * PENDULUM_DT  # in (-0.4, 2 pi + 0.4): wrap once
    new_theta = np.where(new_theta < 0.0, new_theta + pt.TWO_PI, new_theta)
    new_theta = np.where(new_theta >= pt.TWO_PI, new_theta - pt.TWO_PI, new_theta)
    landed = velocity_bins * _bin(new_theta, angle_edges) + _bin(new_speed, speed_edges)  # (ns, na, n * n)
    hits = landed[..., None] == np.arange(ns)  # (ns, na, n * n, ns)
    counts = hits.sum(axis=2)
    reward_sum = pt.dot(np.broadcast_to(-cost, landed.shape)[..., None], hits, axis=2)
    transition = counts / (n * n)
    reward = np.divide(reward_sum, counts, out=np.zeros_like(reward_sum), where=counts > 0)
    # start: theta uniform on a whole turn (1 / angle_bins per angle bin), thetadot U[-1, 1]
    overlap = np.clip(speed_edges[1:], -PENDULUM_RESET_SPEED, PENDULUM_RESET_SPEED) - np.clip(
        speed_edges[:-1], -PENDULUM_RESET_SPEED, PENDULUM_RESET_SPEED
    )
    start = np.broadcast_to(overlap / (2.0 * PENDULUM_RESET_SPEED) / angle_bins, (angle_bins, velocity_bins)).ravel()
    return Task(
        transition=transition, reward=reward, reward_noise=np.zeros((ns, na, ns)), start=start,
        terminal=np.zeros(ns, dtype=bool), horizon=horizon, permutation=np.arange(ns), kind="pendulum",
    )  # fmt: skip


TABLE1: dict[str, Callable[[], Task]] = {
    "cliffwalking": cliffwalking,
    "frozenlake-4x4": partial(frozenlake, slippery=False),
    "frozenlake-4x4-slippery": partial(frozenlake, slippery=True),
    "pendulum-g1": partial(pendulum, g=1.0),
    "pendulum-g5": partial(pendulum, g=5.0),
    "pendulum-g9.8": partial(pendulum, g=9.81),  # OmniRL's and the TQL script's g = 9.81
    "darkroom-6x6": partial(darkroom, dim=6),
    "darkroom-8x8": partial(darkroom, dim=8),
    "darkroom-10x10": partial(darkroom, dim=10),
}
"""Table 1's single-agent gym and Darkroom tasks by name (Garnet and Switch2 are not here)."""

GARNETS: dict[str, tuple[int, int, int]] = {"garnet-16-5-2": (16, 5, 2), "garnet-64-5-2": (64, 5, 2)}
"""Table 1's Garnet(ns, na, b) controls by name."""
OOD_TASKS = (*GARNETS, *TABLE1)
"""Every Table 1 task this benchmark provides, in the table's order."""


def ood_instances(name: str, count: int) -> list[Task]:
    """`count` instances of Table 1 task `name`: Garnet tasks with seeds 0..count-1 (Garnet's own
    seed stream, apart from AnyMDP's), or `count` copies of a fixed task (rolled out with
    independent environment and action streams)."""
    count = check_int("count", count, 1)
    if name in GARNETS:
        return [sample_garnet(*GARNETS[name], seed=j) for j in range(count)]
    if name not in TABLE1:
        raise BenchError(f"unknown OOD task {name!r}; choose from: {', '.join(OOD_TASKS)}")
    task = TABLE1[name]()
    return [task] * count
