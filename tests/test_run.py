"""`python -m bench run` end to end at a micro size, and the result-file schema."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import subprocess

import pytest
import torch
from micro_digest import MICRO, recorded, result_digest, weights_digest

from architectures import REGISTRY
from bench import cli
from bench import run as run_mod
from bench.errors import BenchError
from bench.presets import get_preset
from bench.report import results
from bench.report.leaderboard import collect
from bench.run import RunOptions, run, thin
from tests.fixtures_results import make_result

TINY = get_preset("tiny")


def options(tmp_path, **kw) -> RunOptions:
    return RunOptions(
        out=tmp_path / "results",
        run_dir=tmp_path / "runs",
        data_root=str(tmp_path / "data"),
        progress=False,
        threads=1,
        **kw,
    )


def assert_same_numbers_as_recorded(arch: str, doc: dict, tmp_path) -> None:
    """The micro run's numbers and weights equal those recorded before the last refactor
    (tests/micro_digest.py), where digests were recorded for this CPU kernel family."""
    expected = recorded(arch)
    if expected is None:
        return
    checkpoint = tmp_path / "runs" / "tiny" / arch / "seed0" / "checkpoint.pt"
    assert {"result": result_digest(doc), "weights": weights_digest(checkpoint)} == expected


def test_micro_pipeline_writes_a_valid_result_and_resume_reproduces_it(tmp_path):
    (path,) = run("gdn", MICRO, [0], options(tmp_path))
    assert path == tmp_path / "results" / "tiny" / "gdn" / "seed0.json"
    doc, reasons = results.load_result(path)
    assert reasons == []
    assert_same_numbers_as_recorded("gdn", doc, tmp_path)
    manifest = doc["manifest"]
    assert manifest["arch_class"] == "architectures.gdn:GatedDeltaNet"
    assert (
        manifest["cpu"] == run_mod.cpu_identity()
        and manifest["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability()
    )
    broken = copy.deepcopy(doc)
    broken["manifest"]["cpu"]["family"] = 25
    assert any("manifest.cpu.family: expected str" in r for r in results.check_result(broken))
    del broken["manifest"]["cpu"]  # files written before the field existed
    assert not any("cpu" in r for r in results.check_result(broken))
    assert manifest["preset_digest"] == MICRO.digest() != TINY.digest()
    assert manifest["param_count"]["total"] > manifest["param_count"]["backbone"] > 0
    assert doc["training"]["steps"] == 3 and doc["training"]["tokens"] == 3 * 4 * 64 * 1  # one token per step
    assert doc["offline"]["bin_edges"] == [0, 16, 32, 64] and doc["offline"]["n_sequences"] == 4
    agents = doc["interactive"]["agents"]
    assert set(agents["model"]["groups"]) == {"ns=1", "ns=8"}
    assert agents["oracle"]["overall"]["final"] > agents["random"]["overall"]["final"]
    # the run is finished: --resume loads the final checkpoint and evaluates the same weights
    resumed = dataclasses.replace(options(tmp_path), resume=True, out=tmp_path / "results-resumed")
    (again,) = run("gdn", MICRO, [0], resumed)
    redo, _ = results.load_result(again)
    assert redo["interactive"] == doc["interactive"] and redo["offline"] == doc["offline"]


@pytest.mark.parametrize("arch", [name for name in REGISTRY if name != "gdn"])
def test_every_backbone_runs_the_micro_pipeline(arch, tmp_path_factory):
    """The whole recipe (training with carried state, stepping rollouts) works for each backbone;
    the data folder is shared between the cases (built once)."""
    data = tmp_path_factory.getbasetemp() / "micro-data"
    tmp = tmp_path_factory.mktemp(arch)
    (path,) = run(arch, MICRO, [0], dataclasses.replace(options(tmp), data_root=str(data)))
    doc, reasons = results.load_result(path)
    assert reasons == [] and doc["manifest"]["arch_class"].startswith(f"architectures.{arch}:")
    assert_same_numbers_as_recorded(arch, doc, tmp)
    assert doc["training"]["steps"] == 3 and doc["manifest"]["state_size"] > 0


def test_cli_rejects_unknown_arch_preset_and_seed(capsys, tmp_path):
    assert cli.main(["run", "--arch", "nope", "--out", str(tmp_path)]) == 2
    assert "registered: " in capsys.readouterr().err
    assert cli.main(["run", "--arch", "gdn", "--preset", "huge"]) == 2
    assert "choose from: smoke, tiny" in capsys.readouterr().err
    with pytest.raises(BenchError, match="seeds"):
        run("gdn", MICRO, [-1], options(tmp_path))


def test_thin_keeps_last_point():
    curve = [(i, float(i)) for i in range(1, 11)]
    assert thin(curve, 4) == [[1, 1.0], [4, 4.0], [7, 7.0], [10, 10.0]]
    assert thin(curve, 100) == [[i, float(i)] for i in range(1, 11)]


def test_check_result_reasons():
    doc = results.example_result()
    assert results.check_result(doc) == []
    bad = copy.deepcopy(doc)
    del bad["manifest"]["preset_digest"]
    bad["seed"] = "0"
    bad["interactive"]["agents"]["model"]["overall"]["curve"]["lo"].append(0.0)
    bad["offline"]["action_acc"] = [0.5]
    reasons = results.check_result(bad)
    assert "result.manifest.preset_digest: missing" in reasons
    assert "result.seed: expected an integer, got str" in reasons
    assert any("curve: t/mean/lo/hi differ in length" in r for r in reasons)
    assert any("offline.action_acc: 1 values for 2 bins" in r for r in reasons)
    assert results.check_result({**doc, "schema_version": 99})[0].startswith("result.schema_version: 99")
    assert results.check_result([1]) == ["result: expected a JSON object, got list"]


def test_write_and_load_result(tmp_path):
    path = results.write_result(results.example_result(arch="gsa", seed=3), tmp_path)
    assert path == tmp_path / "tiny" / "gsa" / "seed3.json"
    assert results.iter_results(tmp_path) == [path]
    doc, reasons = results.load_result(path)
    assert reasons == [] and doc["seed"] == 3
    bad = results.example_result()
    bad["training"]["final_loss"] = float("nan")
    with pytest.raises(BenchError, match="final_loss: not finite"):
        results.write_result(bad, tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": NaN}')
    assert results.load_result(broken)[0] is None and "not valid JSON" in results.load_result(broken)[1][0]
    assert "cannot read" in results.load_result(tmp_path / "missing.json")[1][0]
    with pytest.raises(BenchError, match="cannot name a result folder"):
        results.result_path(tmp_path, "tiny", "pkg.mod:Cls", 0)
    assert results.arch_dirname("pkg.mod:Cls") == "pkg.mod-Cls"
    assert json.loads(path.read_text())["kind"] == results.KIND


def test_git_state_ignores_benchmark_outputs(tmp_path):
    """Rewriting leaderboard.md, a result or a doc leaves the checkout clean; a code change does not."""

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "docs").mkdir()
    for name in ("leaderboard.md", "results/a.json", "docs/notes.md", "code.py"):
        (tmp_path / name).write_text("0\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    assert run_mod.git_state(tmp_path)[1] is False
    (tmp_path / "leaderboard.md").write_text("1\n")
    (tmp_path / "results/a.json").write_text("1\n")
    (tmp_path / "docs/notes.md").write_text("1\n")
    commit, dirty = run_mod.git_state(tmp_path)
    assert len(commit) == 40 and dirty is False
    (tmp_path / "code.py").write_text("1\n")
    assert run_mod.git_state(tmp_path)[1] is True


def test_code_provenance_keeps_the_starting_commit_and_flags_changes_during_the_run():
    a, b = "a" * 40, "b" * 40
    assert run_mod.code_provenance((a, False), (a, False)) == (a, False)
    assert run_mod.code_provenance((a, False), (b, False)) == (a, True)  # checked out another commit meanwhile
    assert run_mod.code_provenance((a, False), (a, True)) == (a, True)
    assert run_mod.code_provenance((a, True), (a, False)) == (a, True)
    assert run_mod.code_provenance((None, None), (None, None)) == (None, None)


def test_smoke_preset_runs_end_to_end_and_is_never_ranked(tmp_path):
    (path,) = run("gdn", get_preset("smoke"), [0], options(tmp_path))
    doc, reasons = results.load_result(path)
    assert reasons == [] and doc["preset"] == "smoke" and doc["training"]["steps"] == 12
    accepted, refused = collect(tmp_path / "results")
    assert not accepted and "never ranked" in refused[0][1]


def test_existing_checkpoint_is_never_overwritten_without_resume_or_restart(tmp_path):
    run("gdn", MICRO, [0], options(tmp_path))
    with pytest.raises(BenchError, match="--resume to continue it or --restart"):
        run("gdn", MICRO, [0], dataclasses.replace(options(tmp_path), out=tmp_path / "again"))
    restarted = dataclasses.replace(options(tmp_path), out=tmp_path / "restarted", restart=True)
    (path,) = run("gdn", MICRO, [0], restarted)
    assert results.load_result(path)[1] == []
    with pytest.raises(BenchError, match="exclude each other"):
        dataclasses.replace(options(tmp_path), resume=True, restart=True)


def test_arch_kwargs_are_checked_recorded_and_name_a_variant(tmp_path):
    with pytest.raises(BenchError, match="n_hedas not accepted by 'gdn'.*accepted: n_layers"):
        run("gdn", MICRO, [0], options(tmp_path), arch_kwargs={"n_hedas": 8})
    (path,) = run("gdn", MICRO, [0], options(tmp_path), arch_kwargs={"n_heads": 2})
    doc, reasons = results.load_result(path)
    assert reasons == [] and doc["arch"] == results.variant_name("gdn", {"n_heads": 2}) != "gdn"
    assert doc["manifest"]["arch_kwargs"]["n_heads"] == 2 and path.parent.name == doc["arch"]


def test_cli_refuses_nonsense_runtime_options(capsys):
    for argv, words in (
        (["--threads", "0"], "threads=0; accepted: a positive integer"),
        (["--device", "nonsense"], "is not a torch device"),
        (["--arch-kwargs", "[1]"], "expected a JSON object"),
    ):
        with pytest.raises(SystemExit) if argv[0] == "--arch-kwargs" else contextlib.nullcontext():
            code = cli.main(["run", "--arch", "gdn", "--preset", "smoke", *argv])
            assert code == 2
        assert words in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli.main(["run", "--arch", "gdn", "--device", "cuda"]) == 2
        assert "CUDA is not available here" in capsys.readouterr().err


def test_leaderboard_of_several_folders_prints_without_writing(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    results.write_result(make_result("gdn", 0, 0.7), first)
    results.write_result(make_result("gsa", 0, 0.5), second)
    results.write_result(make_result("gdn", 0, 0.7), second)  # the same run twice
    assert cli.main(["leaderboard", "--results", str(first), "--results", str(second), "--stdout"]) == 0
    out = capsys.readouterr().out
    assert "gsa" in out and out.count("the same preset, arch and seed as") == 1  # only the duplicate is refused
    assert "the same preset, arch and seed as" in out
    assert not (tmp_path / "leaderboard.md").exists()
