"""The speed suite (benchmarks/) does not rot: every benchmark runs once at the smoke scale and its run
renders into docs/performance.md's form; the committed page is what benchmarks.doc makes of the
committed run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.doc import DOC, RUN, TABLES, render

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmark_runs_once_at_the_smoke_scale_and_its_run_renders(tmp_path):
    run = tmp_path / "run.json"
    command = [sys.executable, "-m", "pytest", "benchmarks", "--benchmark-enable", f"--benchmark-json={run}"]
    command += ["-p", "no:cacheprovider"]
    done = subprocess.run(
        command, cwd=ROOT, env={**os.environ, "BENCH_SCALE": "smoke"}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    record = json.loads(run.read_text())
    assert record["machine_info"]["scale"] == "smoke" and record["run_info"]["wall_s"] > 0
    assert all(b["stats"]["rounds"] == 1 for b in record["benchmarks"])
    assert {b["extra_info"]["table"] for b in record["benchmarks"]} == set(TABLES)
    page = render(record)
    assert "Not a measurement" in page and "(not in this run)" not in page
    assert "chunked vs recurrent" in page and "single vs grouped" in page
    assert ("ours vs xenoverse" in page) == (importlib.util.find_spec("xenoverse") is not None)


def test_the_committed_page_is_generated_from_the_committed_run():
    assert DOC.read_text() == render(json.loads(RUN.read_text())), (
        "docs/performance.md differs from `python -m benchmarks.doc results/perf/speed.json`: rerun it"
    )


def test_a_benchmark_of_an_unknown_table_and_an_unplaced_table_are_named():
    run = json.loads(RUN.read_text())
    stray = {
        **run["benchmarks"][0],
        "fullname": "x::y",
        "extra_info": {**run["benchmarks"][0]["extra_info"], "table": "z"},
    }
    with pytest.raises(ValueError, match="x::y names no table"):
        render({**run, "benchmarks": [stray]})
    with pytest.raises(ValueError, match="places no table"):
        render(run, template="{{machine}}\n")
