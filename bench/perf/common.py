"""Measurements that more than one speed suite uses: timers, a peak-memory probe, and
single-environment stepping (ours and the official xenoverse one)."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable

from bench.anymdp.env import AnyMDPEnv
from bench.anymdp.official import to_official


def best_time(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest (by wall time) of `repeats` calls."""
    times = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(times)


def median_seconds(run: Callable[[], None], repeats: int, warmup: bool = True) -> float:
    """Median wall seconds of `repeats` calls (after one untimed call when `warmup`)."""
    if warmup:
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class PeakRSS:
    """Context manager: the peak growth of this process's resident set size, in bytes (Linux)."""

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def __init__(self, interval: float = 5e-4) -> None:
        self.interval = interval
        self.growth = 0

    @classmethod
    def current(cls) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * cls.PAGE

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self.current())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._baseline = self._peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.growth = max(self._peak, self.current()) - self._baseline


def time_single_env_steps(
    make_env: Callable[[], tuple[Callable, Callable]], steps: int, repeats: int
) -> tuple[float, float]:
    """Steps/s of one env stepped with fixed actions, resetting at episode ends."""
    reset, step = make_env()

    def run() -> None:
        reset()
        for t in range(steps):
            if step(t % 5):
                reset()

    return best_time(run, repeats)


def ours_single(task):
    env = AnyMDPEnv(task)
    env.reset(seed=0)
    return (lambda: env.reset()), (lambda a: any(env.step(a)[2:4]))


def official_single(task):
    from xenoverse.anymdp import AnyMDPEnv as OfficialEnv

    env = OfficialEnv(max_steps=task.horizon)
    env.set_task(to_official(task))
    return (lambda: env.reset()), (lambda a: any(env.step(a)[2:4]))


def rate_row(benchmark: str, setting: str, seconds: tuple[float, float | None], count: int, unit: str) -> dict:
    """A table row of a timed benchmark: (wall, CPU) seconds for `count` units, and the rates."""
    wall, cpu = seconds
    return {
        "benchmark": benchmark,
        "setting": setting,
        "seconds": wall,
        "rate": count / wall,
        "unit": unit,
        "cpu seconds": cpu if cpu is not None else "",
        "rate by cpu": count / cpu if cpu else "",
    }
