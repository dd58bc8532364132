"""The peak-memory probe of the memory measurements (`bench perf backbones`, `bench.perf.train.measure`)."""

from __future__ import annotations

import os
import threading
import time


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
