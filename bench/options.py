"""`RunOptions`: how a run works (folders, device, threads, resuming, progress), in one record
shared by `bench run` and the training loop. What a run computes is the preset's alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError


@dataclass(frozen=True)
class RunOptions:
    out: Path = Path("results")
    """Results folder: files go to out/<preset>/<arch>/seed<k>.json."""
    run_dir: Path = Path("runs")
    """Checkpoint folder: run_dir/<preset>/<arch>/seed<k>/checkpoint.pt."""
    data_root: str | None = None
    """Data folder (None: bench.data's default, or $ANYMDP_BENCH_DATA)."""
    resume: bool = False
    """Continue each seed from its checkpoint if there is one."""
    restart: bool = False
    """Start over where a checkpoint exists, replacing it (without `resume` or `restart` an existing
    checkpoint stops the run instead of being overwritten)."""
    device: str | None = None
    """torch device (None: cuda if available, else cpu)."""
    threads: int | None = None
    """torch threads for training (None: every available core); rollouts on CPU use one."""
    progress: bool = True
    """Progress bars."""
    wandb: bool = False
    """Also log training to Weights & Biases (needs the wandb package)."""

    def __post_init__(self) -> None:
        if self.resume and self.restart:
            raise BenchError("resume and restart exclude each other: continue the checkpoint or start over")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise BenchError(f"threads={self.threads!r}; accepted: a positive integer")

    def checkpoint_dir(self, preset: str, arch_dirname: str, seed: int) -> Path:
        """The folder of one seed's checkpoint."""
        return Path(self.run_dir) / preset / arch_dirname / f"seed{seed}"
