"""Task sampling and environment stepping, ours side by side with xenoverse (the official code)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bench.anymdp.batched import BatchedEnv
from bench.anymdp.env import AnyMDPEnv
from bench.anymdp.official import to_official
from bench.anymdp.sampler import sample_task
from bench.anymdp.task import Task
from benchmarks.record import record
from benchmarks.scale import SCALE

NA = 5
IMPLEMENTATIONS = ("ours", "xenoverse")


@pytest.fixture(scope="module")
def official_sample() -> Callable[[int, int, int], Task]:
    """xenoverse's sampler, its numba solver compiled before any timing."""
    pytest.importorskip("xenoverse")
    from bench.anymdp.fidelity import official_sampler

    sample = official_sampler()
    sample(8, NA, 0)
    return sample


@pytest.mark.parametrize("ns", SCALE.sample_ns)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_sample_task(benchmark, request, impl: str, ns: int) -> None:
    sample = sample_task if impl == "ours" else request.getfixturevalue("official_sample")
    seeds = iter(range(SCALE.sample_tasks))
    setting = f"one task, na {NA}, seeds 0-{SCALE.sample_tasks - 1}, one per round"
    record(benchmark, "sampling", f"ns {ns}", impl, setting, {"tasks": 1})
    benchmark.pedantic(sample, setup=lambda: ((ns, NA, next(seeds)), {}), rounds=SCALE.sample_tasks)


def test_batched_env(benchmark, env_tasks: list[Task]) -> None:
    env = BatchedEnv(env_tasks, seed=0)
    actions = np.random.default_rng(0).integers(0, env.na, (SCALE.batched_steps, env.batch))
    env.reset()

    def run() -> None:
        for row in actions:
            env.step(row)

    setting = f"B {env.batch} tasks, {SCALE.batched_steps} steps, random actions"
    record(benchmark, "env", f"ns {SCALE.env_ns}", "BatchedEnv (ours)", setting, {"env steps": actions.size})
    benchmark.pedantic(run, rounds=SCALE.rounds, warmup_rounds=SCALE.warmup)


def single_env(task: Task, impl: str) -> tuple[Callable[[], object], Callable[[int], bool]]:
    """(reset, step -> episode ended) of one env on `task`: ours or xenoverse's."""
    if impl == "ours":
        env = AnyMDPEnv(task)
        env.reset(seed=0)
    else:
        from xenoverse.anymdp import AnyMDPEnv as OfficialEnv

        env = OfficialEnv(max_steps=task.horizon)
        env.set_task(to_official(task))
    return env.reset, lambda action: any(env.step(action)[2:4])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_single_env(benchmark, env_tasks: list[Task], impl: str) -> None:
    if impl == "xenoverse":
        pytest.importorskip("xenoverse")
    reset, step = single_env(env_tasks[0], impl)

    def run() -> None:
        reset()
        for t in range(SCALE.single_steps):
            if step(t % NA):
                reset()

    setting = f"1 task, {SCALE.single_steps} steps, actions t mod {NA}, reset at episode ends"
    variant = "AnyMDPEnv (ours)" if impl == "ours" else "AnyMDPEnv (xenoverse)"
    record(benchmark, "env", f"ns {SCALE.env_ns}", variant, setting, {"env steps": SCALE.single_steps})
    benchmark.pedantic(run, rounds=SCALE.rounds, warmup_rounds=SCALE.warmup)
