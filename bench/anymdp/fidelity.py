"""`python -m bench fidelity`: our AnyMDP generator against the official one (xenoverse 0.1.14.0).

Samples tasks from both, measures permutation-invariant properties of each task, and compares
the two distributions per ns with two-sample tests (Kolmogorov-Smirnov for continuous
properties, Fisher's exact test for binary ones). The two samplers' speed is measured by the speed
suite (benchmarks/test_anymdp.py).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator

import numpy as np
from scipy import stats

from bench.anymdp.official import from_official
from bench.anymdp.sampler import sample_task, task_quality
from bench.anymdp.task import Task
from bench.errors import BenchError
from bench.report.table import format_table

CONTINUOUS = ("terminal_fraction", "support", "gap", "gini", "entropy", "horizon_per_ns")
BINARY = ("has_goal",)


def task_properties(task: Task) -> dict[str, float]:
    """Properties that do not depend on the observation permutation (ns >= 2)."""
    alive = ~task.terminal
    quality = task_quality(task)
    return {
        "terminal_fraction": float(task.terminal.mean()),
        "has_goal": float(task.terminal[-1]),  # the goal is the last inner state in both generators
        "support": float(np.mean(np.count_nonzero(task.transition[alive] > 0, axis=-1)) / task.ns),
        "gap": quality.gap,
        "gini": quality.gini,
        "entropy": quality.entropy,
        "horizon_per_ns": task.horizon / task.ns,
    }


@contextlib.contextmanager
def _global_numpy_rng_restored() -> Iterator[None]:
    """xenoverse seeds and draws from the global NumPy RNG (its defect); confine that to the call."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


def official_sampler() -> Callable[[int, int, int], Task]:
    """`(ns, na, seed) -> Task` drawing from xenoverse's AnyMDPTaskSampler, reproducibly."""
    try:
        from xenoverse.anymdp import AnyMDPTaskSampler
    except ImportError as err:
        raise BenchError(
            f"the official sampler needs xenoverse==0.1.14.0 (pip install -e '.[official]'): {err}"
        ) from err

    def sample(ns: int, na: int, seed: int) -> Task:
        # Passing `seed` makes xenoverse call np.random.seed(seed): reproducible, but global;
        # the context manager puts the caller's global RNG state back afterwards.
        with _global_numpy_rng_restored():
            return from_official(AnyMDPTaskSampler(ns, na, seed=seed), seed=seed)

    return sample


def _compare(name: str, ours: list[float], official: list[float]) -> dict[str, object]:
    if name in BINARY:
        table = [[sum(ours), len(ours) - sum(ours)], [sum(official), len(official) - sum(official)]]
        test, p_value = "fisher", stats.fisher_exact(table).pvalue
        statistic = np.mean(ours) - np.mean(official)
    else:
        result = stats.ks_2samp(ours, official)
        test, statistic, p_value = "ks", result.statistic, result.pvalue
    return {
        "property": name,
        "ours_mean": float(np.mean(ours)),
        "ours_std": float(np.std(ours)),
        "official_mean": float(np.mean(official)),
        "official_std": float(np.std(official)),
        "test": test,
        "statistic": float(statistic),
        "p_value": float(p_value),
    }


def compare_generators(
    ns: int, ours_tasks: int, official_tasks: int, seed: int, na: int = 5
) -> list[dict[str, object]]:
    """One row per property: means, stds, test statistic and p-value for this ns."""
    sample_official = official_sampler()
    ours = [task_properties(sample_task(ns, na, seed + i)) for i in range(ours_tasks)]
    official = [task_properties(sample_official(ns, na, seed + i)) for i in range(official_tasks)]
    rows = []
    for name in CONTINUOUS + BINARY:
        row = {"ns": ns, "n_ours": ours_tasks, "n_official": official_tasks}
        row.update(_compare(name, [p[name] for p in ours], [p[name] for p in official]))
        rows.append(row)
    return rows


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ns", type=int, nargs="+", default=[16, 32, 64], help="state counts to compare (each >= 8)")
    parser.add_argument(
        "--tasks", type=int, default=24, help="official tasks per ns (slow: ~0.5 s each at ns=16, ~4 s at ns=64)"
    )
    parser.add_argument("--ours-tasks", type=int, default=256, help="our tasks per ns (fast)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; task i uses seed + i in both generators")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")


def main(args: argparse.Namespace) -> int:
    if min(args.ns) < 8:
        raise BenchError(f"--ns values must be >= 8 (the properties are defined for MDPs, not bandits); got {args.ns}")
    if args.tasks < 2 or args.ours_tasks < 2:
        raise BenchError(f"--tasks and --ours-tasks must be >= 2; got {args.tasks}, {args.ours_tasks}")
    if args.seed < 0:
        raise BenchError(f"--seed must be >= 0; got {args.seed}")
    begin = time.perf_counter()
    for ns in args.ns:
        rows = compare_generators(ns, args.ours_tasks, args.tasks, args.seed)
        print(format_table(rows, markdown=args.markdown), flush=True)
        print(f"(ns={ns} done after {time.perf_counter() - begin:.0f} s)\n", flush=True)
    return 0
