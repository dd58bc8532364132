"""Live training logs beside the checkpoint: `metrics.csv`, one row per optimiser step written as
it is taken, and TensorBoard event files in `tensorboard/` when the `tensorboard` package is
installed (`pip install -e '.[logs]'`; view with `tensorboard --logdir runs`).

A resumed run continues its log: the rows after the checkpoint's step (steps that will be trained
again) are dropped first, atomically, so every step appears once; a run started over begins a new
log. TensorBoard's own purge (`purge_step`) drops the same steps from the event files.
"""

from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path

from bench.io import atomic_write

FIELDS = ("step", "loss", "policy", "obs", "reward", "lr", "tokens_per_s", "wall_s")
"""Columns: optimiser step; weighted loss and each term's mean (policy and next-observation
cross-entropy, reward MSE); learning rate of the step; training tokens/s since the run (or its
resume) started; training seconds since the run started (across resumes)."""
LOG_NAME = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"


def read_log(path: Path) -> list[dict[str, float]]:
    """The complete rows of a metrics.csv (a row cut short by a crash is left out)."""
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows.append({name: float(row[name]) for name in FIELDS})
            except (KeyError, TypeError, ValueError):
                continue
    return rows


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class TrainLog:
    """The log of one run, continued after `start_step` (0: a new log)."""

    def __init__(self, folder: Path, start_step: int) -> None:
        self.path = Path(folder) / LOG_NAME
        kept = [row for row in read_log(self.path) if row["step"] <= start_step] if start_step else []
        text = io.StringIO()
        writer = csv.DictWriter(text, FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in kept:
            writer.writerow({name: _cell(row[name]) for name in FIELDS})
        atomic_write(self.path, text.getvalue().encode())
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, FIELDS, lineterminator="\n")
        self._board = None
        if tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            self._board = SummaryWriter(str(Path(folder) / TENSORBOARD_DIR), purge_step=start_step + 1)

    def write(self, row: dict[str, float]) -> None:
        """Append one step's row (flushed at once, so a reader sees it while training goes on)."""
        self._writer.writerow({name: _cell(row[name]) for name in FIELDS})
        self._file.flush()
        if self._board is not None:
            step = int(row["step"])
            for name in FIELDS[1:]:
                self._board.add_scalar(f"train/{name}", row[name], step)

    def close(self) -> None:
        self._file.close()
        if self._board is not None:
            self._board.close()


def _cell(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))
