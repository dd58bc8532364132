"""Result files as one tidy pandas DataFrame, and `python -m bench results --csv FILE`.

One row per (preset, arch, seed, agent, suite, task, group, metric): `suite` is "test" (the
unseen AnyMDP tasks) or "ood" (a Table 1 task, named in `task`); `group` is "overall" or a group
of the suite ("ns=8", or the OOD task's own name); `metric` is a summary score of
docs/results-schema.md (`final`, `gain`, ...). Offline losses are rows with agent
"model", suite "offline" and group "overall".
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.io import atomic_write

COLUMNS = ("preset", "arch", "seed", "agent", "suite", "task", "group", "metric", "value")
SCALARS = (
    "final",
    "first",
    "auc",
    "gain",
    "few_shot",
    "reach_fraction",
    "steps_to_threshold",
    "paper_max",
    "n_tasks",
)
"""The summary scores a row can hold (the curve and intervals stay in the result files)."""


def _summary_rows(key: tuple, summary: dict) -> list[tuple]:
    return [(*key, metric, summary[metric]) for metric in SCALARS if summary.get(metric) is not None]


def _interactive_rows(doc: dict, suite: str, task: str, record: dict) -> list[tuple]:
    rows = []
    for agent, entry in record["agents"].items():
        base = (doc["preset"], doc["arch"], doc["seed"], agent, suite, task)
        rows += _summary_rows((*base, "overall"), entry["overall"])
        for group, summary in entry["groups"].items():
            rows += _summary_rows((*base, group), summary)
    return rows


def result_rows(doc: dict) -> list[tuple]:
    """The tidy rows of one (valid) result document."""
    rows = _interactive_rows(doc, "test", "anymdp", doc["interactive"])
    for task, record in doc.get("ood", {}).get("by_task", {}).items():
        rows += _interactive_rows(doc, "ood", task, record)
    offline = (doc["preset"], doc["arch"], doc["seed"], "model", "offline", "anymdp", "overall")
    rows += [(*offline, metric, value) for metric, value in doc["offline"]["overall"].items()]
    return rows


def results_frame(docs: list[dict]) -> pd.DataFrame:
    """Every document's rows in one DataFrame with `COLUMNS` (numeric `value`)."""
    frame = pd.DataFrame([row for doc in docs for row in result_rows(doc)], columns=list(COLUMNS))
    return frame.astype({"value": "float64", "seed": "int64"})


def configure(parser: argparse.ArgumentParser) -> None:
    from bench.report.leaderboard import add_results_argument  # the leaderboard imports this module

    add_results_argument(parser)
    parser.add_argument("--csv", type=Path, default=None, help="write the table as CSV")
    parser.add_argument("--parquet", type=Path, default=None, help="write the table as Parquet (needs pyarrow)")


def main(args: argparse.Namespace) -> int:
    from bench.report.leaderboard import collect, result_roots

    if args.csv is None and args.parquet is None:
        raise BenchError("nothing to write: give --csv FILE and/or --parquet FILE")
    if args.parquet is not None and importlib.util.find_spec("pyarrow") is None:
        raise BenchError("--parquet needs the pyarrow package (pip install pyarrow); --csv needs nothing")
    accepted, refused = collect(result_roots(args))
    frame = results_frame([doc for docs in accepted.values() for doc in docs])
    if args.csv is not None:
        atomic_write(args.csv, frame.to_csv(index=False).encode())
        print(f"wrote {args.csv}: {len(frame)} rows")
    if args.parquet is not None:
        tmp = args.parquet.with_name(args.parquet.name + ".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(args.parquet)
        print(f"wrote {args.parquet}: {len(frame)} rows")
    for path, reason in refused:
        print(f"  refused {path}: {reason}")
    return 0
