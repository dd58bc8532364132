"""Live training logs beside the checkpoint: `metrics.csv`, one row per optimiser step written as
it is taken, TensorBoard event files in `tensorboard/` when the `tensorboard` package is
installed (`pip install -e '.[logs]'`; view with `tensorboard --logdir runs`), and a Weights &
Biases run when asked for (`bench run --wandb`; `WANDB_MODE=offline` works without a network).

A resumed run continues its log: the rows after the checkpoint's step (steps that will be trained
again) are dropped first, atomically, so every step appears once; a run started over begins a new
log. TensorBoard's own purge (`purge_step`) drops the same steps from the event files. A W&B run
is named after the run's folder (`<preset>-<arch>-seed<k>`) and resumed under the same id; W&B
itself ignores steps it has already logged.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
from pathlib import Path

from bench.errors import BenchError
from bench.io import atomic_write

FIELDS = ("step", "loss", "policy", "obs", "reward", "lr", "tokens_per_s", "wall_s")
"""Columns: optimiser step; weighted loss and each term's mean (policy and next-observation
cross-entropy, reward MSE); learning rate of the step; training tokens/s since the run (or its
resume) started; training seconds since the run started (across resumes)."""
LOG_NAME = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
WANDB_PROJECT = "anymdp-bench"


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


def check_wandb() -> None:
    """A BenchError unless the wandb package can be imported."""
    if importlib.util.find_spec("wandb") is None:
        raise BenchError("--wandb: the wandb package is not installed (pip install -e '.[logs]')")


class TrainLog:
    """The log of one run, continued after `start_step` (0: a new log); `wandb`: also log to W&B."""

    def __init__(self, folder: Path, start_step: int, wandb: bool = False) -> None:
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
        self._wandb = None
        if wandb:
            check_wandb()
            import wandb as wb

            name = "-".join(Path(folder).resolve().parts[-3:])
            run_id = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16]
            self._wandb = wb.init(project=WANDB_PROJECT, name=name, id=run_id, resume="allow", dir=str(folder))

    def write(self, row: dict[str, float]) -> None:
        """Append one step's row (flushed at once, so a reader sees it while training goes on)."""
        self._writer.writerow({name: _cell(row[name]) for name in FIELDS})
        self._file.flush()
        if self._board is not None:
            step = int(row["step"])
            for name in FIELDS[1:]:
                self._board.add_scalar(f"train/{name}", row[name], step)
        if self._wandb is not None:
            self._wandb.log({f"train/{name}": row[name] for name in FIELDS[1:]}, step=int(row["step"]))

    def close(self) -> None:
        self._file.close()
        if self._board is not None:
            self._board.close()
        if self._wandb is not None:
            self._wandb.finish()


def _cell(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))
