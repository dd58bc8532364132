"""Table 1's out-of-distribution tasks (bench.anymdp.classic): stepped side by side with gymnasium,
tables equal to gymnasium's, and exact oracle returns that match hand computations."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from bench.anymdp.classic import (
    CLIFF_STATE,
    OOD_TASKS,
    TABLE1,
    cliffwalking,
    darkroom,
    frozenlake,
    ood_instances,
    pendulum,
)
from bench.anymdp.env import AnyMDPEnv
from bench.anymdp.solvers import TaskArrays, oracle_returns, random_returns
from bench.anymdp.task import Task
from bench.errors import BenchError

SIZES = {  # name: (ns, na, horizon), as docs/ood.md states them
    "cliffwalking": (49, 4, 200),
    "frozenlake-4x4": (16, 4, 100),
    "frozenlake-4x4-slippery": (16, 4, 100),
    "pendulum-g1": (60, 5, 200),
    "pendulum-g5": (60, 5, 200),
    "pendulum-g9.8": (60, 5, 200),
    "darkroom-6x6": (36, 4, 200),
    "darkroom-8x8": (64, 4, 200),
    "darkroom-10x10": (100, 4, 200),
}
PENDULUM_G98_FINGERPRINT = "5b35f9f999cac398e91677a94340509d383b68679606bc130f8dc5e6bedeae96"
CLIFF_START, CLIFF_GOAL = 36, 47
UP, RIGHT, DOWN, LEFT = range(4)  # CliffWalking's actions
LAKE_LEFT, LAKE_DOWN, LAKE_RIGHT = 0, 1, 2  # FrozenLake's actions


def returns(task: Task) -> tuple[float, float]:
    arrays = TaskArrays.stack([task])
    return float(oracle_returns(arrays)[0]), float(random_returns(arrays)[0])


def gym_tables(table: dict, ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P (outcome probabilities summed in list order), R and 'entering ends the episode' from gymnasium's P."""
    transition, reward, ends = np.zeros((ns, 4, ns)), np.zeros((ns, 4, ns)), np.zeros(ns, dtype=bool)
    for s, actions in table.items():
        for a, outcomes in actions.items():
            for p, n, r, t in outcomes:
                transition[s, a, n] += p
                reward[s, a, n] = r
                ends[n] |= t
    return transition, reward, ends


def step_side_by_side(task: Task, reference: gymnasium.Env, actions, seed: int) -> list[tuple]:
    """Step our env and gymnasium's with the same actions (both restarted when ours ends); return the
    (ours, gymnasium's) pairs of (next state, reward, terminated, truncated) that differ."""
    ours = AnyMDPEnv(task)
    obs, _ = ours.reset(seed=seed)
    ref, _ = reference.reset(seed=seed)
    assert obs == ref
    differing = []
    for action in actions:
        step = ours.step(int(action))[:4]
        ref_step = reference.step(int(action))[:4]
        if step != ref_step:
            differing.append((step, ref_step))
        if step[2] or step[3]:
            obs, _ = ours.reset()
            ref, _ = reference.reset()
            assert obs == ref
    return differing


CLIFF_PATH = [UP] + [RIGHT] * 11 + [DOWN]
LAKE_PATH = [LAKE_DOWN, LAKE_DOWN, LAKE_RIGHT, LAKE_RIGHT, LAKE_DOWN, LAKE_RIGHT]


@pytest.mark.parametrize("seed", range(4))
def test_cliffwalking_steps_like_gymnasium_except_that_the_cliff_ends_the_episode(seed):
    actions = CLIFF_PATH + list(np.random.default_rng(seed).integers(4, size=400)) + CLIFF_PATH
    differing = step_side_by_side(cliffwalking(), gymnasium.make("CliffWalking-v1"), actions, seed)
    # gymnasium sends a cliff step back to the start and goes on; here it enters the terminal cliff state
    assert differing and all(
        ours == (CLIFF_STATE, -100.0, True, False) and ref == (CLIFF_START, -100, False, False)
        for ours, ref in differing
    )


def test_cliffwalking_tables_are_gymnasiums_with_the_cliff_as_a_terminal_state():
    task = cliffwalking()
    env = gymnasium.make("CliffWalking-v1").unwrapped
    transition, reward, ends = gym_tables(env.P, 48)
    cliff = reward == -100  # gymnasium: back to the start with -100
    into_cliff = cliff.any(axis=2)
    assert into_cliff[CLIFF_START, RIGHT] and into_cliff[CLIFF_GOAL, LEFT] and into_cliff[24 + 1 : 24 + 11, DOWN].all()
    expected_transition, expected_reward = np.zeros((49, 4, 49)), np.zeros((49, 4, 49))
    expected_transition[:48, :, :48] = np.where(cliff, 0.0, transition)
    expected_transition[:48, :, CLIFF_STATE] = into_cliff
    expected_reward[:48, :, :48] = np.where(cliff | (transition == 0), 0.0, reward)
    expected_reward[:48, :, CLIFF_STATE] = np.where(into_cliff, -100.0, 0.0)
    for table in (expected_transition, expected_reward):
        table[[CLIFF_GOAL, CLIFF_STATE]] = 0.0  # terminal rows
    np.testing.assert_array_equal(task.transition, expected_transition)
    np.testing.assert_array_equal(task.reward, expected_reward)
    assert np.flatnonzero(ends).tolist() == [CLIFF_GOAL]
    assert np.flatnonzero(task.terminal).tolist() == [CLIFF_GOAL, CLIFF_STATE]
    np.testing.assert_array_equal(task.start, np.append(env.initial_state_distrib, 0.0))


@pytest.mark.parametrize("seed", range(4))
def test_nonslippery_frozenlake_steps_like_gymnasium(seed):
    actions = LAKE_PATH + [LAKE_LEFT] * 100 + list(np.random.default_rng(seed).integers(4, size=400)) + LAKE_PATH
    reference = gymnasium.make("FrozenLake-v1", is_slippery=False)  # registered limit: 100 steps
    assert step_side_by_side(frozenlake(slippery=False), reference, actions, seed) == []


@pytest.mark.parametrize("slippery", [False, True])
def test_frozenlake_tables_are_gymnasiums(slippery):
    task = frozenlake(slippery)
    env = gymnasium.make("FrozenLake-v1", is_slippery=slippery).unwrapped
    transition, reward, ends = gym_tables(env.P, 16)
    assert np.flatnonzero(ends).tolist() == [5, 7, 11, 12, 15]
    live = ~ends
    np.testing.assert_array_equal(task.terminal, ends)
    np.testing.assert_array_equal(task.transition[live], transition[live])  # exact: outcomes summed in order
    assert not task.transition[ends].any()
    reached = task.transition > 0
    np.testing.assert_array_equal(task.reward[reached], reward[reached])
    np.testing.assert_array_equal(task.start, env.initial_state_distrib)


def test_grid_oracles_match_the_known_optima():
    cliff_opt, cliff_rand = returns(cliffwalking())
    assert cliff_opt == -13.0  # 13 steps of -1: up, 11 x right, down into the goal (entering it pays -1 too)
    assert cliff_rand < cliff_opt
    lake_opt, lake_rand = returns(frozenlake(slippery=False))
    assert lake_opt == 1.0 and 0 < lake_rand < 0.05  # the 6-step path; random about 0.0139
    slippery_opt, slippery_rand = returns(frozenlake(slippery=True))
    assert abs(slippery_opt - 0.7442) < 1e-4 and slippery_rand < slippery_opt


@pytest.mark.parametrize("dim", [6, 8, 10])
def test_darkroom_oracle_is_one_minus_a_cent_per_extra_step(dim):
    task = darkroom(dim)
    row, col = np.divmod(np.arange(dim * dim - 1), dim)  # every start cell (all but the goal)
    distance = (dim - 1 - row) + (dim - 1 - col)
    expected = np.mean(1.0 - 0.01 * (distance - 1))
    opt, rand = returns(task)
    assert abs(opt - expected) < 1e-12 and rand < opt
    assert task.transition[0, 1, 0] == 1.0 and task.reward[0, 1, 0] == -0.01  # row-1 at the top wall stays
    goal = dim * dim - 1
    assert task.transition[goal - 1, 2, goal] == 1.0 and task.reward[goal - 1, 2, goal] == 1.0
    assert np.flatnonzero(task.terminal).tolist() == [goal] and task.start[goal] == 0.0


def airsoul_cell(observation: np.ndarray) -> int:
    """airsoul's 12 x 5 discretisation of a Pendulum-v1 observation (cos, sin, thetadot)."""
    theta = np.arctan2(observation[1], observation[0]) % (2 * np.pi)
    angle = np.clip(np.digitize(theta, np.linspace(0, 2 * np.pi, 13)) - 1, 0, 11)
    speed = np.clip(np.digitize(np.clip(observation[2], -8, 8), np.linspace(-8, 8, 6)) - 1, 0, 4)
    return int(5 * angle + speed)


@pytest.mark.parametrize("g", [1.0, 9.81])
def test_pendulum_with_one_sample_per_cell_is_gymnasiums_step_from_the_cell_centre(g):
    task = pendulum(g, samples_per_axis=1)
    env = gymnasium.make("Pendulum-v1", g=g).unwrapped
    env.reset(seed=0)
    for s in range(60):
        centre = np.array([(s // 5 + 0.5) * np.pi / 6, -8 + (s % 5 + 0.5) * 3.2])
        for a in range(5):
            env.state = centre.copy()
            observation, reward, *_ = env.step(np.array([a - 2.0]))
            landed = airsoul_cell(observation)
            assert task.transition[s, a, landed] == 1.0
            assert task.reward[s, a, landed] == pytest.approx(reward, rel=1e-12, abs=1e-12)


def test_pendulum_tables_start_and_identity():
    tasks = {g: pendulum(g) for g in (1.0, 5.0, 9.81)}
    for task in tasks.values():
        assert np.abs(task.transition.sum(axis=2) - 1.0).max() < 1e-12
        assert not task.reward[task.transition == 0].any() and not task.terminal.any()
        np.testing.assert_array_equal(np.flatnonzero(task.start), 5 * np.arange(12) + 2)  # thetadot in [-1.6, 1.6)
        assert task.start.sum() == pytest.approx(1.0, abs=1e-15)
        opt, rand = returns(task)
        assert rand < opt < 0
    assert len({task.fingerprint() for task in tasks.values()}) == 3  # g changes the task
    assert pendulum(9.81).fingerprint() == tasks[9.81].fingerprint() == PENDULUM_G98_FINGERPRINT


def test_table1_tasks_have_the_documented_sizes():
    assert set(TABLE1) == set(SIZES)
    for name, build in TABLE1.items():
        task = build()
        assert isinstance(task, Task) and (task.ns, task.na, task.horizon) == SIZES[name], name
        assert np.array_equal(task.permutation, np.arange(task.ns)) and not task.reward_noise.any()
        assert name.startswith(task.kind)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: cliffwalking(horizon=0), "horizon must be an int >= 1"),
        (lambda: frozenlake(slippery=1), "slippery must be True or False"),
        (lambda: darkroom(1), "dim must be an int >= 2"),
        (lambda: pendulum(float("nan")), "g must be a finite number >= 0"),
        (lambda: pendulum(9.81, samples_per_axis=0), "samples_per_axis must be an int >= 1"),
    ],
)
def test_bad_arguments_fail_in_one_line(build, message):
    with pytest.raises(BenchError, match=message):
        build()


def value_iteration_return(task: Task) -> float:
    """The finite-horizon optimum by plain value iteration over the task's own tables, written
    independently of bench.anymdp.solvers: V_h(s) = max_a sum_s' P (R + V_{h-1}(s') [s' not terminal])."""
    p, r = task.transition, task.reward
    v = np.zeros(task.ns)
    for _ in range(task.horizon):
        continuation = np.where(task.terminal, 0.0, v)
        v = np.max(np.einsum("san,san->sa", p, r) + np.einsum("san,n->sa", p, continuation), axis=1)
    return float(task.start @ v)


@pytest.mark.parametrize("name", OOD_TASKS)
def test_every_oracle_equals_plain_value_iteration(name):
    (task,) = ood_instances(name, 1)
    (j_opt,) = oracle_returns(TaskArrays.stack([task]))
    assert j_opt == pytest.approx(value_iteration_return(task), rel=1e-9, abs=1e-9)
