"""`python -m bench demo`: sample, solve and step AnyMDP tasks, and print what was measured.

Per ns group: the exact finite-horizon optimum J_opt and random return J_rand, the normalised
score of the DPD label policy (exact), and the mean normalised episode score measured while
stepping a `BatchedEnv` with the uniform-random policy, the finite-horizon oracle and TQL-UCB
(first and last quarter of its steps); then the stepping throughput of each policy.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from bench.anymdp.batched import BatchedEnv
from bench.anymdp.sampler import sample_task
from bench.anymdp.solvers import (
    TaskArrays,
    backward_induction,
    label_policy,
    oracle_returns,
    policy_return,
    random_returns,
)
from bench.anymdp.tql_ucb import TQLUCB
from bench.errors import BenchError
from bench.metrics import normalized
from bench.report.table import format_table

Policy = Callable[[BatchedEnv, np.ndarray], np.ndarray]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ns", type=int, nargs="+", default=[16, 32, 64], help="state counts to sample")
    parser.add_argument("--tasks", type=int, default=4, help="tasks per ns")
    parser.add_argument("--steps", type=int, default=10_000, help="batched env steps per policy")
    parser.add_argument("--seed", type=int, default=0, help="seed of tasks and rollouts")


def step_policy(env: BatchedEnv, act: Policy, steps: int, learner: TQLUCB | None = None):
    """Run `act` for `steps` steps; returns (finished episodes as (step, task, return), seconds)."""
    obs = env.reset()
    total = np.zeros(env.batch)
    episodes = []
    start = time.perf_counter()
    for step in range(steps):
        actions = act(env, obs)
        obs_next, reward, terminated, truncated = env.step(actions)
        if learner is not None:
            learner.update(obs, actions, reward, env.next_obs, terminated)
        total += reward
        for b in np.flatnonzero(terminated | truncated):
            episodes.append((step, b, total[b]))
        total[terminated | truncated] = 0.0
        obs = obs_next
    return episodes, time.perf_counter() - start


def mean_scores(episodes, j_rand, j_opt, group: np.ndarray, first: int, last: int) -> float:
    """Mean normalised score of the episodes of tasks in `group` that ended in steps [first, last)."""
    scores = [normalized(r, j_rand[b], j_opt[b]) for step, b, r in episodes if group[b] and first <= step < last]
    return float(np.nanmean(scores)) if scores else float("nan")


def main(args: argparse.Namespace) -> int:
    if args.tasks < 1 or args.steps < 4 or min(args.ns) < 1:
        raise BenchError(f"need --tasks >= 1, --steps >= 4, --ns >= 1; got {args.tasks}, {args.steps}, {args.ns}")
    t0 = time.perf_counter()
    tasks = [sample_task(ns, seed=args.seed * 1000 + i) for ns in args.ns for i in range(args.tasks)]
    t_sample = time.perf_counter() - t0

    t0 = time.perf_counter()
    arrays = TaskArrays.stack(tasks)
    j_opt, j_rand = oracle_returns(arrays), random_returns(arrays)
    j_label = policy_return(arrays, np.eye(arrays.na)[label_policy(arrays)])
    oracle_actions = backward_induction(arrays).argmax(axis=3)  # (B, H, ns), by steps to go - 1
    t_solve = time.perf_counter() - t0

    rng = np.random.default_rng(args.seed)
    batch_index = np.arange(len(tasks))
    learner = TQLUCB(len(tasks), arrays.ns, arrays.na)
    policies: dict[str, tuple[Policy, TQLUCB | None]] = {
        "random": (lambda env, obs: rng.integers(0, env.na, env.batch), None),
        "oracle": (lambda env, obs: oracle_actions[batch_index, env.horizon - env.episode_step - 1, env.state], None),
        "tql_ucb": (lambda env, obs: learner.act(obs, rng), learner),
    }
    runs, speed = {}, []
    for name, (act, learn) in policies.items():
        episodes, seconds = step_policy(BatchedEnv(tasks, seed=args.seed), act, args.steps, learn)
        runs[name] = episodes
        speed.append(
            {
                "policy": name,
                "tasks": len(tasks),
                "steps": args.steps,
                "seconds": seconds,
                "steps/s (all tasks)": len(tasks) * args.steps / seconds,
            }
        )

    ns_of = np.array([t.ns for t in tasks])
    rows = []
    quarter = args.steps // 4
    for ns in args.ns:
        group = ns_of == ns
        rows.append(
            {
                "ns": ns,
                "tasks": int(group.sum()),
                "horizon": float(arrays.horizon[group].mean()),
                "J_opt": float(j_opt[group].mean()),
                "J_rand": float(j_rand[group].mean()),
                "label score": float(np.nanmean(normalized(j_label, j_rand, j_opt)[group])),
                "random": mean_scores(runs["random"], j_rand, j_opt, group, 0, args.steps),
                "oracle": mean_scores(runs["oracle"], j_rand, j_opt, group, 0, args.steps),
                "oracle episodes": sum(1 for _, b, _ in runs["oracle"] if group[b]),
                "tql first 1/4": mean_scores(runs["tql_ucb"], j_rand, j_opt, group, 0, quarter),
                "tql last 1/4": mean_scores(runs["tql_ucb"], j_rand, j_opt, group, args.steps - quarter, args.steps),
            }
        )
    print(
        f"sampled {len(tasks)} tasks in {t_sample:.2f} s; "
        f"solved them (J_opt, J_rand, labels, oracle) in {t_solve:.2f} s"
    )
    print("exact J_opt / J_rand / label-policy score; measured mean normalised episode scores while stepping")
    print("(episodes that ended within the steps; with few long episodes the means are noisy):")
    print(format_table(rows))
    print()
    print(format_table(speed))
    return 0
