"""`bench gpu-check`: its CPU-side logic (budget, statuses, junit parsing, tolerance comparisons, the
report) on the CPU; the GPU parts themselves only under `-m gpu` with CUDA."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

import bench.gpu_check as gpu_check
from architectures import REGISTRY
from bench.errors import BenchError
from bench.gpu_check import (
    TOLERANCES,
    Budget,
    KernelPath,
    PathResult,
    compare_path,
    configure,
    environment,
    judge,
    kernel_paths,
    loss_falls,
    main,
    overall_status,
    parse_junit,
    part_status,
    part_summary,
    path_errors,
    render_markdown,
    run_within,
    train_step_seconds,
    unavailable,
    write_report,
)

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@no_cuda
def test_without_cuda_it_stops_at_once_in_one_line(tmp_path):
    parser = argparse.ArgumentParser()
    configure(parser)
    with pytest.raises(BenchError, match=r"gpu-check needs a CUDA GPU; none is visible here \(torch ") as err:
        main(parser.parse_args(["--out", str(tmp_path)]))
    assert "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())


def test_budget_deadlines_are_cumulative_and_renormalised():
    clock = Clock()
    budget = Budget(["tests", "kernels", "speed", "train"], 100.0, 0.0, clock)
    assert [round(budget.deadline(p), 6) for p in ("tests", "kernels", "speed", "train")] == [20.0, 30.0, 70.0, 100.0]
    clock.now = 5.0  # tests finished early: kernels gets its 10 s and the 15 s left over
    assert budget.left("kernels") == pytest.approx(25.0)
    only = Budget(["speed", "train"], 70.0, 10.0, clock)
    assert (only.deadline("speed"), only.deadline("train")) == (50.0, 80.0)


def test_run_within_skips_what_the_longest_row_says_would_overrun():
    clock = Clock()
    deadline = 22.0
    durations = iter([4.0, 9.0, 1.0])

    def run(item: str, seconds_left: float) -> dict:
        clock.now += next(durations)
        return {"status": "passed", "left": seconds_left}

    rows = run_within(
        ["a", "b", "c", "d", "e"], run, lambda item: {"item": item}, lambda: deadline - clock(), guess=5.0, clock=clock
    )
    # a: guess 5 <= 22 s left, runs 4 s; b: longest 4 <= 18, runs 9 s; c: 9 <= 9, runs 1 s; d: 9 > 8, skipped
    assert [(r["item"], r["status"]) for r in rows] == [
        ("a", "passed"),
        ("b", "passed"),
        ("c", "passed"),
        ("d", "skipped"),
        ("e", "skipped"),
    ]
    assert rows[0]["left"] == 22.0 and rows[2]["left"] == 9.0
    assert rows[3]["note"] == "would overrun: about 9 s needed, 8 s left"
    first = run_within(["x"], run, lambda item: {}, lambda: 3.0, guess=5.0, clock=clock)
    assert first[0]["status"] == "skipped" and "about 5 s needed, 3 s left" in first[0]["note"]


def test_statuses():
    assert part_status([{"status": "passed"}, {"status": "unavailable"}]) == "passed"
    assert part_status([{"status": "passed"}, {"status": "skipped"}]) == "incomplete"
    assert part_status([{"status": "timed out"}, {"status": "error"}]) == "failed"
    assert part_status([{"status": "unavailable"}]) == "skipped"
    assert overall_status({"a": {"status": "passed"}, "b": {"status": "passed"}}) == "passed"
    assert overall_status({"a": {"status": "passed"}, "b": {"status": "skipped"}}) == "incomplete"
    assert overall_status({"a": {"status": "incomplete"}, "b": {"status": "error"}}) == "failed"


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="5">
<testcase classname="tests.test_gdn" name="test_gpu_op_fla_matches_torch[chunk-100-float32]" time="1.2"/>
<testcase classname="tests.test_gdn" name="test_gpu_backbone_fla_matches_torch[bf16]" time="0.4">
  <failure message="AssertionError: assert 0.05 &lt; 0.02&#10;more">trace</failure></testcase>
<testcase classname="tests.test_lstm" name="test_cuda" time="0.1"><error message="fixture broke">x</error></testcase>
<testcase classname="tests.test_mamba2" name="test_mamba_ssm" time="0"><skipped message="needs mamba-ssm"/></testcase>
<testcase classname="tests.test_gone.TestCase" name="test_x" time="0.1"/>
</testsuite></testsuites>"""


def test_parse_junit_counts_and_failing_ids():
    result = parse_junit(JUNIT)
    assert {k: result[k] for k in ("passed", "failed", "errors", "skipped")} == {
        "passed": 2,
        "failed": 1,
        "errors": 1,
        "skipped": 1,
    }
    assert result["failing"] == [
        {
            "id": "tests/test_gdn.py::test_gpu_backbone_fla_matches_torch[bf16]",
            "message": "AssertionError: assert 0.05 < 0.02",
        },
        {"id": "tests/test_lstm.py::test_cuda", "message": "fixture broke"},
    ]


def result(output: torch.Tensor, state: list[torch.Tensor], grads: dict[str, torch.Tensor]) -> PathResult:
    return PathResult(output.double(), [s.double() for s in state], {k: g.double() for k, g in grads.items()})


def test_path_errors_and_tolerances_on_cpu_tensors():
    gen = torch.Generator().manual_seed(0)
    y, h, g1, g2 = (torch.randn(*shape, generator=gen) for shape in ((2, 5, 8), (2, 4), (3, 3), (100,)))
    want = result(y, [h], {"w": g1, "b": g2})
    assert path_errors(want, want) == {
        "output": 0.0,
        "state": 0.0,
        "grad": 0.0,
        "worst_param": "w",
        "worst_param_grad": 0.0,
    }
    got = result(y * 1.01, [h * 0.98], {"w": g1, "b": g2 + 0.001 * g2.norm() / 10})
    errors = path_errors(got, want)
    assert errors["output"] == pytest.approx(0.01) and errors["state"] == pytest.approx(0.02)
    assert errors["worst_param"] == "b" and errors["worst_param_grad"] == pytest.approx(1e-3, rel=1e-4)
    total = math.sqrt(g1.norm() ** 2 + g2.norm() ** 2)
    assert errors["grad"] == pytest.approx((1e-3 * g2.norm() / total).item(), rel=1e-4)
    assert judge(errors, TOLERANCES["bf16"]) == "passed"  # 2e-2 <= 3e-2
    assert judge(errors, TOLERANCES["fp32"]) == "failed"  # 1e-2 > 5e-3
    assert judge({**errors, "grad": math.nan}, TOLERANCES["bf16"]) == "failed"
    missing = path_errors(result(y, [h], {"w": g1}), want)
    assert missing["grad"] == math.inf and judge(missing, TOLERANCES["bf16"]) == "failed"
    assert path_errors(result(y[:, :4], [h], {"w": g1, "b": g2}), want)["output"] == math.inf


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_compare_path_runs_on_cpu(dtype, one_thread):
    """The whole comparison, with both paths on the CPU (where fla is never used): identical numbers."""
    row = compare_path(
        KernelPath("mamba2", "fla", reference_kwargs={"use_fla": False}), dtype, "tiny", "cpu", (2, 9, 13)
    )
    assert row["status"] == "passed" and row["dtype"] == dtype
    assert row["output"] == row["state"] == row["grad"] == 0.0


def test_kernel_paths_cover_every_backbone_and_mamba_ssm():
    paths = kernel_paths()
    assert {p.arch for p in paths} == set(REGISTRY)
    kinds = {(p.arch, p.kernel) for p in paths}
    assert {
        ("gdn", "fla"),
        ("mamba2", "fla"),
        ("mamba2", "mamba_ssm"),
        ("lstm", "cuda"),
        ("transformer", "cuda"),
    } <= kinds
    assert all(p.reference_kwargs == {"use_fla": False} for p in paths if p.kernel == "fla")


@no_cuda
def test_mamba_ssm_path_is_unavailable_without_cuda():
    path = next(p for p in kernel_paths() if p.kernel == "mamba_ssm")
    assert "mamba-ssm is not installed" in unavailable(path)


def test_loss_check():
    falling = [(s, 2.0 - 0.005 * s) for s in range(1, 201)]
    check = loss_falls(falling)
    assert check["status"] == "passed" and check["first_mean"] > check["last_mean"]
    assert check["first_mean"] == pytest.approx(2.0 - 0.005 * 10.5)
    assert loss_falls([(s, 1.0) for s in range(1, 201)])["status"] == "failed"
    short = loss_falls(falling[:39])
    assert short["status"] == "failed" and short["note"] == "39 steps; the check needs 40"


def test_train_estimate_reads_the_speed_row_of_its_configuration():
    rows = [
        {"size": "paper", "backbone": "gdn", "kernel": "torch", "s_per_step": 9.0},
        {"size": "small", "backbone": "gdn", "kernel": "torch", "s_per_step": 0.4},
    ]
    assert train_step_seconds({"rows": rows}) == 0.4  # no fla on this machine: gdn's default kernel is torch
    assert train_step_seconds({}) is None


def full_report() -> dict:
    env = {
        "gpu": "NVIDIA H100 80GB HBM3",
        "gpu_memory_gib": 79.1,
        "compute_capability": "9.0",
        "gpus_visible": 1,
        "driver": "550.54.15",
        "cuda": "12.4",
        "torch": "2.7.0",
        "triton": "3.3.0",
        "fla": "0.6.0",
        "mamba_ssm": None,
        "python": "3.11.7",
        "commit": "abc123",
        "date_utc": "2026-12-03T12:00:00+00:00",
    }
    kernel_row = {"backbone": "gdn", "kernel": "fla", "reference": "torch", "dtype": "bf16", "status": "failed"}
    return {
        "format": "gpu-check/1",
        "environment": env,
        "budget_s": 450.0,
        "status": "failed",
        "wall_s": 441.0,
        "parts": {
            "tests": {
                "status": "failed",
                "wall_s": 80.0,
                "passed": 40,
                "failed": 1,
                "errors": 0,
                "skipped": 2,
                "failing": [{"id": "tests/test_gdn.py::test_x[bf16]", "message": "AssertionError"}],
            },
            "kernels": {
                "status": "failed",
                "wall_s": 30.0,
                "tolerances": TOLERANCES,
                "probe_shape": [2, 200, 300],
                "rows": [
                    {
                        **kernel_row,
                        "output": 0.05,
                        "state": math.nan,
                        "grad": math.inf,
                        "worst_param": "blocks.0.attn.q_proj.weight",
                        "worst_param_grad": math.inf,
                    },
                    {
                        **kernel_row,
                        "kernel": "mamba_ssm",
                        "status": "unavailable",
                        "note": "mamba-ssm is not installed",
                    },
                ],
            },
            "speed": {
                "status": "incomplete",
                "wall_s": 180.0,
                "steps": 2,
                "paper_s_per_iteration": 8.0,
                "rows": [
                    {
                        "size": "paper",
                        "backbone": "gdn",
                        "kernel": "fla",
                        "batch": 5,
                        "seq_len": 12288,
                        "segment": 2048,
                        "status": "measured",
                        "params_m": 57.3,
                        "s_per_step": 4.0,
                        "tokens_per_s": 76800.0,
                        "env_steps_per_s": 15360.0,
                        "peak_gib": 30.5,
                    },
                    {
                        "size": "paper",
                        "backbone": "lstm",
                        "kernel": "cuda",
                        "batch": 5,
                        "seq_len": 12288,
                        "segment": 2048,
                        "status": "skipped",
                        "note": "would overrun: about 60 s needed, 10 s left",
                    },
                ],
            },
            "train": {
                "status": "incomplete",
                "wall_s": 140.0,
                "note": "stopped at step 150 of 200 at the deadline",
                "arch": "gdn",
                "preset": "small",
                "tasks": 256,
                "steps": 150,
                "data_s": 8.0,
                "train_s": 130.0,
                "first_mean": 2.1,
                "last_mean": 1.4,
                "loss_curve": [[s, 2.2 - s / 200] for s in range(1, 151)],
            },
        },
    }


def test_report_renders_every_part_and_is_strict_json(tmp_path):
    report = full_report()
    text = render_markdown(report)
    for expected in (
        "NVIDIA H100 80GB HBM3 (79 GiB, compute capability 9.0), driver 550.54.15, CUDA 12.4, torch 2.7.0",
        "mamba-ssm None",
        "**failed**: budget 450 s, took 441 s",
        "## Tests (`pytest -m gpu`): failed (80 s)",
        "40 passed, 1 failed, 0 errors, 2 skipped.",
        "- `tests/test_gdn.py::test_x[bf16]`: AssertionError",
        "bf16: outputs 3e-02, states 3e-02, gradients 5e-02",
        "| 5.0e-02 | nan   | inf  | blocks.0.attn.q_proj.weight inf | failed",
        "mamba-ssm is not installed",
        "| 5 x 12288 (2048)",
        "| 0.50     |",  # 4 s per step against the paper's 8 s
        "would overrun: about 60 s needed, 10 s left",
        "stopped at step 150 of 200 at the deadline.",
        "| 150 | 1.4500 |",
    ):
        assert expected in text, expected
    write_report(report, tmp_path / "gpu")
    written = json.loads((tmp_path / "gpu" / "gpu-check.json").read_text(), parse_constant=pytest.fail)
    assert written["parts"]["kernels"]["rows"][0]["grad"] is None
    assert (tmp_path / "gpu" / "gpu-check.md").read_text() == text
    assert render_markdown(written).count("##") == 4  # the JSON alone renders again
    assert sorted(p.name for p in (tmp_path / "gpu").iterdir()) == ["gpu-check.json", "gpu-check.md"]


def test_report_of_skipped_and_broken_parts_renders():
    report = full_report()
    report["parts"] = {
        "tests": {"status": "error", "wall_s": 1.0, "note": "/usr/bin/python: No module named pytest"},
        "train": {"status": "skipped", "wall_s": 0.0, "note": "would overrun: 3 s left"},
    }
    text = render_markdown(report)
    assert "## Tests (`pytest -m gpu`): error (1 s)\n\n/usr/bin/python: No module named pytest." in text
    assert "would overrun: 3 s left." in text


def test_main_runs_the_chosen_parts_in_order_and_writes_after_each(tmp_path, monkeypatch, capsys):
    """The command's orchestration, with the GPU and the parts stood in for."""
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check, "environment", lambda: full_report()["environment"])
    calls = []

    def fake_part(part: str, left, done: dict) -> dict:
        calls.append((part, round(left()), sorted(done)))
        assert (tmp_path / "gpu-check.json").is_file() == bool(done)  # the report is rewritten after each part
        return full_report()["parts"][part]

    monkeypatch.setattr(gpu_check, "run_part", fake_part)
    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--budget", "100", "--parts", "speed", "tests"])
    assert main(args) == 1  # the stand-in tests part failed
    assert calls == [("tests", 33, []), ("speed", 100, ["tests"])]  # shares 0.2 : 0.4, in the parts' order
    written = json.loads((tmp_path / "gpu-check.json").read_text())
    assert written["status"] == "failed" and set(written["parts"]) == {"tests", "speed"}
    markdown = (tmp_path / "gpu-check.md").read_text()
    assert markdown.index("## Tests") < markdown.index("## Speed") and markdown == render_markdown(written)
    out = capsys.readouterr().out
    assert "[gpu-check] tests: failed: 40 passed, 1 failed, 2 skipped" in out
    assert "[gpu-check] speed: incomplete: 1 of 2 rows passed or measured" in out
    with pytest.raises(BenchError, match="--budget=0.0"):
        main(parser.parse_args(["--out", str(tmp_path), "--budget", "0"]))


def test_part_summaries():
    parts = full_report()["parts"]
    assert part_summary(parts["kernels"]) == ": 0 of 2 rows passed or measured"
    assert part_summary(parts["speed"]) == ": 1 of 2 rows passed or measured"
    assert part_summary(parts["train"]) == ": mean loss 2.1000 (first 20 steps) -> 1.4000 (last)"
    assert part_summary({"status": "skipped", "note": "would overrun: 3 s left"}) == ": would overrun: 3 s left"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_environment_and_cuda_comparison_on_gpu():
    env = environment()
    assert env["gpu"] and env["cuda"] and env["torch"] == torch.__version__
    row = compare_path(KernelPath("lstm", "cuda"), "fp32", "tiny", "cuda", (2, 20, 30))
    assert row["status"] == "passed", row


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_available_kernel_path_passes_at_tiny_on_gpu():
    for path in kernel_paths():
        if unavailable(path) is None:
            for dtype in ("fp32", "bf16"):
                row = compare_path(path, dtype, "tiny", "cuda", (2, 50, 130))
                assert row["status"] == "passed", (path, row)
