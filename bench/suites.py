"""Evaluation suites: named sets of tasks a trained model is rolled out on, each task with a group.

- `test`: the frozen unseen test tasks (the leaderboard's), grouped by ns.
- `valid`: the held-out valid tasks (made like training tasks); the place for hyper-parameter
  search, so that the test tasks are never used to choose anything. Grouped in two halves of the
  training ns range (a group per ns would hold a handful of tasks).
- `fresh`: never-published tasks of a nonce (`bench.data.split.fresh_task_specs`), with the test
  split's ns groups and sizes: a score that differs from `test` shows a model tuned to the test set.
- `ood`: the paper's Table 1 tasks (`bench.anymdp.classic`, docs/ood.md), `OOD_INSTANCES` of each,
  grouped by task. A task with more states than the preset's model embeds is not applicable there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.anymdp.classic import OOD_TASKS, ood_instances
from bench.anymdp.task import Task
from bench.data import split as sp
from bench.errors import BenchError
from bench.presets import Preset, max_states

SUITES = ("test", "valid", "fresh", "ood")
OOD_INSTANCES = 16
"""Instances of each OOD task: Garnet task seeds, or independent rollouts of a fixed task."""


@dataclass(frozen=True)
class Suite:
    name: str
    """Suite name, with the nonce for `fresh` ("fresh-nonce7")."""
    tasks: list[Task]
    """The tasks, in a fixed order."""
    groups: list[str]
    """Group label of each task ("ns=8", "ns=8-12", "cliffwalking", ...)."""
    not_applicable: dict[str, str] = field(default_factory=dict)
    """Tasks of the suite left out at this preset, with the reason."""


def valid_groups(preset: Preset, ns: list[int]) -> list[str]:
    """The valid suite's group of each ns: the lower or the upper half of the training ns range."""
    lo, hi = preset.data.train_ns
    mid = (lo + hi) // 2
    low, high = (f"ns={lo}-{mid}", f"ns={mid + 1}-{hi}") if hi > lo else (f"ns={lo}", f"ns={lo}")
    return [low if n <= mid else high for n in ns]


def load_suite(name: str, preset: Preset, nonce: int | None = None, workers: int = 1) -> Suite:
    """The tasks of suite `name` for `preset` (`nonce` is required by, and only accepted for, fresh)."""
    if name not in SUITES:
        raise BenchError(f"unknown suite {name!r}; choose from: {', '.join(SUITES)}")
    if (nonce is not None) != (name == "fresh"):
        raise BenchError(
            "--nonce N is required by --suite fresh" if name == "fresh" else "--nonce applies to --suite fresh only"
        )
    if name == "ood":
        return ood_suite(preset)
    if name == "valid":
        specs = sp.split_task_specs(preset, "valid", range(preset.data.valid_tasks))
        ns = [spec[0] for spec in specs]
        return Suite("valid", sp.sample_tasks(specs, workers), valid_groups(preset, ns))
    specs = sp.test_task_specs(preset) if name == "test" else sp.fresh_task_specs(preset, nonce)
    label = "test" if name == "test" else f"fresh-nonce{nonce}"
    return Suite(label, sp.sample_tasks(specs, workers), [f"ns={spec[0]}" for spec in specs])


def ood_suite(preset: Preset) -> Suite:
    """The Table 1 tasks the preset's model can observe (at most `max_states(preset)` state ids)."""
    tasks, groups, skipped = [], [], {}
    for name in OOD_TASKS:
        instances = ood_instances(name, OOD_INSTANCES)
        ns, limit = instances[0].ns, max_states(preset)
        if ns > limit:
            skipped[name] = f"{ns} states; the {preset.name} model embeds {limit} observation ids"
            continue
        tasks += instances
        groups += [name] * len(instances)
    return Suite("ood", tasks, groups, skipped)
