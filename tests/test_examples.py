"""The template backbone of examples/ passes check-arch and runs the smoke preset end to end."""

from __future__ import annotations

from bench.check_arch import check_backbone, failure_sentence
from bench.options import RunOptions
from bench.presets import get_preset
from bench.report import results
from bench.run import run

TEMPLATE = "examples.minimal_backbone:GatedRecurrence"


def test_template_passes_every_check():
    checks = check_backbone(TEMPLATE, "tiny", long_steps=2048)
    assert failure_sentence(checks) is None and len(checks) >= 9


def test_template_runs_the_smoke_preset(tmp_path):
    options = RunOptions(out=tmp_path / "results", run_dir=tmp_path / "runs", progress=False, threads=1)
    (path,) = run(TEMPLATE, get_preset("smoke"), [0], options)
    doc, reasons = results.load_result(path)
    assert (
        reasons == []
        and doc["manifest"]["arch_class"] == TEMPLATE
        and doc["arch"] == "examples.minimal_backbone-GatedRecurrence"
    )
