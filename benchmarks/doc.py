"""`python -m benchmarks.doc [RUN] [--out FILE]`: docs/performance.md from a saved run of the speed suite.

RUN is pytest-benchmark's JSON (`--benchmark-json`; default results/perf/speed.json, which `make bench`
writes). The prose is benchmarks/doc_template.md, whose lines `{{machine}}`, `{{summary}}` and
`{{table NAME}}` become the run's description, its side-by-side ratios and table NAME: the benchmarks
whose extra_info names that table (benchmarks/record.py), one line each, with mean time, rounds and
throughput, and where the table has a baseline, each row's throughput relative to it.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).with_name("doc_template.md")
RUN = ROOT / "results" / "perf" / "speed.json"
DOC = ROOT / "docs" / "performance.md"


@dataclass(frozen=True)
class Table:
    title: str
    """What the table measures, for the summary."""
    row: str
    """Header of the row column."""
    variant: str | None
    """Header of the variant column (None: one variant per row, not shown)."""
    baseline: str | None = None
    """The variant that each row's others are compared with (None: no ratio column)."""


TABLES = {
    "sampling": Table("Task sampling", "tasks", "sampler", "xenoverse"),
    "env": Table("Environment stepping", "tasks", "environment", "AnyMDPEnv (xenoverse)"),
    "solvers": Table("Exact solvers", "tasks", "solver"),
    "data": Table("Data", "data", "benchmark"),
    "layer": Table("One layer, forward + backward", "backbone", "form", "recurrent"),
    "step": Table("One recurrent step", "backbone", None),
    "train": Table("One training step", "backbone", "layout", "grouped"),
    "stats": Table("Leaderboard statistics", "estimate", None),
}
PLACEHOLDER = re.compile(r"^\{\{(machine|summary|table (\w+))\}\}$")


def seconds(value: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value * 1e9:.3g} ns"


def rate(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def throughput(bench: dict, unit: str) -> float:
    return bench["extra_info"]["per_call"][unit] / bench["stats"]["mean"]


def primary_unit(bench: dict) -> str:
    return next(iter(bench["extra_info"]["per_call"]))


def ratios(benches: list[dict], baseline: str) -> dict[int, float]:
    """Throughput (first unit) of each benchmark over its row's baseline variant, by index in `benches`."""
    base = {b["extra_info"]["row"]: b for b in benches if b["extra_info"]["variant"] == baseline}
    out = {}
    for i, bench in enumerate(benches):
        reference = base.get(bench["extra_info"]["row"])
        if reference is not None:
            unit = primary_unit(bench)
            out[i] = throughput(bench, unit) / throughput(reference, unit)
    return out


def by_row(benches: list[dict]) -> list[dict]:
    """Rows in order of first appearance, variants in run order within a row."""
    rows = list(dict.fromkeys(b["extra_info"]["row"] for b in benches))
    return sorted(benches, key=lambda b: rows.index(b["extra_info"]["row"]))


def markdown(headers: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines])


def table(name: str, benches: list[dict]) -> str:
    spec = TABLES[name]
    if not benches:
        return "(not in this run)"
    units = list(dict.fromkeys(unit for b in benches for unit in b["extra_info"]["per_call"]))
    extra = list(dict.fromkeys(column for b in benches for column in b["extra_info"]["columns"]))
    relative = ratios(benches, spec.baseline) if spec.baseline else {}
    headers = [spec.row, *([spec.variant] if spec.variant else []), "setting", "mean", "std", "rounds"]
    headers += [f"{unit}/s" for unit in units] + ([f"vs {spec.baseline}"] if spec.baseline else []) + extra
    lines = []
    for i, bench in enumerate(benches):
        info, stats = bench["extra_info"], bench["stats"]
        line = [info["row"], *([info["variant"]] if spec.variant else []), info["setting"]]
        line += [seconds(stats["mean"]), seconds(stats["stddev"]) if stats["rounds"] > 1 else "-", str(stats["rounds"])]
        line += [rate(throughput(bench, unit)) if unit in info["per_call"] else "" for unit in units]
        if spec.baseline:
            line.append(f"{relative[i]:.3g}x" if i in relative else "")
        line += [f"{info['columns'][column]:,}" if column in info["columns"] else "" for column in extra]
        lines.append(line)
    return markdown(headers, lines)


def summary(tables: dict[str, list[dict]]) -> str:
    """One line per compared variant: its throughput relative to the baseline, row by row."""
    lines = []
    for name, spec in TABLES.items():
        benches = tables.get(name, [])
        if spec.baseline is None or not benches:
            continue
        relative = ratios(benches, spec.baseline)
        unit = primary_unit(benches[0])
        for variant in dict.fromkeys(b["extra_info"]["variant"] for b in benches):
            if variant == spec.baseline:
                continue
            found = [
                f"{relative[i]:.3g}x ({b['extra_info']['row']})"
                for i, b in enumerate(benches)
                if b["extra_info"]["variant"] == variant and i in relative
            ]
            if found:
                lines.append(f"- {spec.title}, {variant} vs {spec.baseline} ({unit}/s): {', '.join(found)}")
    return "\n".join(lines) or "(no side-by-side benchmarks in this run)"


def machine(run: dict) -> str:
    info, commit = run["machine_info"], run["commit_info"]
    when = datetime.fromisoformat(run["datetime"]).strftime("%Y-%m-%d %H:%M UTC")
    cpu = info.get("cpu", {})
    dirty = " with uncommitted changes" if commit.get("dirty") else ""
    run_info = run.get("run_info", {})
    text = (
        f"Run saved {when} at commit `{str(commit.get('id'))[:7]}`{dirty}, scale `{info.get('scale')}`, "
        f"on {cpu.get('brand_raw', info.get('machine'))} ({cpu.get('count', '?')} cores, {info.get('system')} "
        f"{info.get('release')}): Python {info.get('python_version')}, torch {info.get('torch')} with "
        f"{info.get('torch_threads')} thread(s), NumPy {info.get('numpy')}, xenoverse {info.get('xenoverse')}, "
        f"pytest-benchmark {run.get('version')}."
    )
    if run_info:
        start, end = run_info["load_average_at_start"][0], run_info["load_average_at_end"][0]
        text += f" The run took {run_info['wall_s'] / 60:.1f} min; load average (1 min) {start:.2f} at its start,"
        text += f" {end:.2f} at its end."
    if info.get("scale") != "full":
        text += "\n\n**Not a measurement**: this run used the smoke scale (tiny inputs, one round each)."
    return text


def render(run: dict, template: str | None = None) -> str:
    """The Markdown page of `run` (a `--benchmark-json` record) with `template`'s prose."""
    template = TEMPLATE.read_text() if template is None else template
    tables: dict[str, list[dict]] = {}
    for bench in run["benchmarks"]:
        name = bench["extra_info"].get("table")
        if name not in TABLES:
            raise ValueError(f"benchmark {bench['fullname']} names no table of benchmarks.doc.TABLES: {name!r}")
        tables.setdefault(name, []).append(bench)
    out, placed = [], set()
    for line in template.splitlines():
        match = PLACEHOLDER.match(line.strip())
        if match is None:
            out.append(line)
        elif match[1] == "machine":
            out.append(machine(run))
        elif match[1] == "summary":
            out.append(summary(tables))
        else:
            if match[2] not in TABLES:
                raise ValueError(f"the template names an unknown table {match[2]!r}")
            placed.add(match[2])
            out.append(table(match[2], by_row(tables.get(match[2], []))))
    if set(TABLES) - placed:
        raise ValueError(f"the template places no table {sorted(set(TABLES) - placed)}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.doc", description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, default=RUN, help=f"a --benchmark-json file (default {RUN})")
    parser.add_argument("--out", type=Path, default=DOC, help=f"the page to write (default {DOC}); - prints it")
    args = parser.parse_args(argv)
    page = render(json.loads(args.run.read_text()))
    if str(args.out) == "-":
        print(page, end="")
    else:
        args.out.write_text(page)
        print(f"wrote {args.out} from {args.run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
