"""Validation, the leaderboard and the plots, on result files made from synthetic rollouts."""

from __future__ import annotations

import copy
import json

import matplotlib.image
import numpy as np
import pytest

from bench import cli
from bench.perf.backbones import scaling_record
from bench.report import results
from bench.report.leaderboard import _peak_memory, collect, render, write_leaderboard
from bench.report.plot import arch_color, make_plots
from bench.report.validate import agent_episodes, validate_doc
from tests.fixtures_results import EVAL_STEPS, make_result


@pytest.fixture(scope="module")
def good() -> dict:
    return make_result("gdn", seed=0, skill=0.7)


def test_consistent_result_validates(good):
    assert validate_doc(good) == []


def test_episode_records_rebuild_the_rollout(good):
    ep, tasks = agent_episodes(good, "model")
    assert ep.steps == EVAL_STEPS and ep.n_tasks == len(tasks["ns"]) == 12
    assert ep.task.size == sum(len(starts) for starts in tasks["episode_starts"])
    assert np.allclose(np.bincount(ep.task, weights=ep.ret), [sum(r) for r in tasks["episode_returns"]])


@pytest.mark.parametrize(
    "edit, where",
    [
        (
            lambda d: d["interactive"]["agents"]["model"]["overall"].__setitem__("asymptotic_max", 0.99),
            "asymptotic_max",
        ),
        (
            lambda d: d["interactive"]["agents"]["model"]["groups"]["ns=8"]["curve"]["mean"].__setitem__(5, 0.123),
            "curve.mean[5]",
        ),
        (lambda d: d["interactive"]["agents"]["oracle"]["overall"].__setitem__("few_shot", 0.5), "few_shot"),
        (lambda d: d["interactive"]["agents"]["tql_ucb"]["tasks"]["episode_returns"][0].__setitem__(0, 9.0), "tql_ucb"),
        (
            lambda d: d["ood"]["by_task"]["frozenlake-4x4"]["agents"]["model"]["overall"].__setitem__(
                "last_quarter", 1
            ),
            "ood.by_task.frozenlake-4x4.agents.model.overall.last_quarter",
        ),
    ],
)
def test_an_edited_number_is_caught(good, edit, where):
    doc = copy.deepcopy(good)
    edit(doc)
    reasons = validate_doc(doc)
    assert len(reasons) == 1 and where in reasons[0]


def test_schema_1_files_without_the_ood_section_are_still_read(good):
    old = {k: v for k, v in copy.deepcopy(good).items() if k != "ood"}
    assert validate_doc({**old, "schema_version": 1}) == []
    assert "result.ood: missing" in validate_doc(old)[0]  # version 2 must hold it


def test_changed_or_unknown_backbone_source_is_refused(good):
    doc = copy.deepcopy(good)
    source = doc["manifest"]["backbone_source"]
    source["files"]["architectures/gdn.py"] = "1" * 64
    source["sha256"] = "2" * 64
    assert "backbone source differs from the run's (architectures/gdn.py changed)" in validate_doc(doc)[0]
    doc = copy.deepcopy(good)
    doc["manifest"]["arch_class"] = "nopkg.mod:Mixer"
    assert validate_doc(doc)[0].startswith("backbone source cannot be checked: cannot import module 'nopkg.mod'")


def test_other_preset_or_dataset_is_refused(good):
    doc = copy.deepcopy(good)
    doc["manifest"]["preset_digest"] = "f" * 64
    assert "preset digest" in validate_doc(doc)[0]
    assert "dataset fingerprint" in validate_doc(good, expected_fingerprint="e" * 64)[0]
    doc = copy.deepcopy(good)
    del doc["interactive"]["agents"]["random"]["tasks"]
    assert "tasks: missing" in validate_doc(doc)[0]


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    for arch, skill in (("gdn", 0.8), ("rwkv7", 0.78), ("lstm", 0.3)):
        for seed in (0, 1):
            results.write_result(make_result(arch, seed, skill), root)
    edited = make_result("gsa", 0, 0.5)
    edited["interactive"]["agents"]["model"]["overall"]["asymptotic_max"] = 0.95
    (root / "tiny" / "gsa").mkdir(parents=True)
    (root / "tiny" / "gsa" / "seed0.json").write_text(json.dumps(edited))
    (root / "tiny" / "gsa" / "seed1.json").write_text("{not json")
    return root


def test_leaderboard_table_sorting_baselines_and_refusals(results_dir, tmp_path):
    out, accepted, refused = write_leaderboard(results_dir, tmp_path / "leaderboard.md")
    text = out.read_text()
    assert len(accepted["tiny"]) == 6 and len(refused) == 2
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`" in line.split("|")[2]]
    assert [row.split("|")[2].strip() for row in rows] == ["`gdn`", "`rwkv7`", "`lstm`"]
    assert rows[0].split("|")[1].strip() == "=1" and rows[1].split("|")[1].strip() == "=1"  # 0.80 vs 0.78: tied
    assert rows[2].split("|")[1].strip() == "3"
    for label in ("oracle (finite-horizon optimum)", "uniform random", "TQL-UCB"):
        assert f"*{label}*" in text
    assert "Refused result files" in text
    assert "### Out of distribution: the paper's Table 1 tasks (`tiny`)" in text
    ood_rows = [line for line in text.splitlines() if line.startswith("| `") or line.startswith("| *")]
    assert any(row.startswith("| `gdn` | 2 | ") for row in ood_rows)
    assert "Not applicable at this preset: cliffwalking (49 states)." in text
    assert "seed0.json` | interactive.agents.model.overall.asymptotic_max" in text
    assert "seed1.json` |" in text and "not valid JSON" in text


def test_leaderboard_is_deterministic(results_dir):
    first = render(*collect(results_dir))
    second = render(*collect(results_dir))
    assert first == second


def test_plots_are_written_and_not_blank(results_dir, tmp_path):
    written = make_plots(results_dir, tmp_path / "plots")
    names = sorted(path.name for path in written)
    for stem in ("tiny_d_curves", "tiny_action_loss", "tiny_asymptotic_vs_few_shot"):
        assert f"{stem}.png" in names and f"{stem}.svg" in names
    for path in written:
        assert path.stat().st_size > 5000
        if path.suffix == ".png":
            image = matplotlib.image.imread(path)
            assert image.shape[0] > 300 and image[..., :3].std() > 0.05
    assert arch_color("gdn") != arch_color("rwkv7")
    again = make_plots(results_dir, tmp_path / "again")
    for first, second in zip(written, again, strict=True):  # same results, same bytes (SVG ids included)
        assert first.read_bytes() == second.read_bytes()


def test_validate_cli_exit_codes(results_dir, capsys):
    assert cli.main(["validate", str(results_dir / "tiny" / "gdn" / "seed0.json")]) == 0
    assert cli.main(["validate", str(results_dir / "tiny" / "gsa" / "seed0.json")]) == 1
    assert "asymptotic_max" in capsys.readouterr().out


def test_scaling_record_feeds_the_scaling_plot(results_dir, tmp_path):
    rows = [
        {
            "backbone": arch,
            "T": t,
            "fwd+bwd (s)": 0.01 * t / 1024 * k,
            "ms per 1K steps": 10.0 * k,
            "peak memory (MiB)": 2.0 * t / 1024 * k,
            "state numbers": 100 * k,
        }
        for k, arch in enumerate(("gdn", "rwkv7"), start=1)
        for t in (1024, 2048, 4096)
    ] + [{"backbone": "broken", "T": "-", "fwd+bwd (s)": "error: RuntimeError: x"}]
    record = scaling_record(rows, threads=1)
    assert {row["arch"] for row in record["scaling"]} == {"gdn", "rwkv7"} and len(record["scaling"]) == 6
    perf = tmp_path / "backbones.json"
    perf.write_text(json.dumps(record))
    written = make_plots(results_dir, tmp_path / "plots", perf)
    scaling = [path for path in written if path.name == "scaling.png"]
    assert scaling and matplotlib.image.imread(scaling[0])[..., :3].std() > 0.05


def test_perf_backbones_json_needs_the_scaling_table(capsys, tmp_path):
    assert cli.main(["perf", "backbones", "--only", "step", "--json", str(tmp_path / "x.json")]) == 2
    assert "--json writes the scaling table" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_peak_memory_cell_names_cpu_rss_and_older_cpu_files():
    gpu, cpu, old = (make_result("gdn", 0, 0.5) for _ in range(3))
    gpu["manifest"].update(device="NVIDIA H100", peak_memory_bytes=3 * 2**30)
    cpu["manifest"].update(device="cpu", peak_memory_bytes=900 * 2**20)
    old["manifest"].update(device="cpu", peak_memory_bytes=None)
    assert _peak_memory([gpu]) == "3072 MiB"
    assert _peak_memory([cpu]) == "900 MiB RSS"
    assert _peak_memory([cpu, old]) == "— (CPU)"


def test_copied_or_renamed_results_are_refused(tmp_path):
    """A gdn result copied under another architecture or renamed to another seed counts nowhere."""
    root = tmp_path / "results"
    path = results.write_result(make_result("gdn", 0, 0.8), root)
    for arch, name in (("gsa", "seed0.json"), ("gdn", "seed7.json")):
        (root / "tiny" / arch).mkdir(parents=True, exist_ok=True)
        (root / "tiny" / arch / name).write_bytes(path.read_bytes())
    accepted, refused = collect(root)
    assert [doc["seed"] for doc in accepted["tiny"]] == [0]
    reasons = {p.relative_to(root).as_posix(): reason for p, reason in refused}
    assert set(reasons) == {"tiny/gsa/seed0.json", "tiny/gdn/seed7.json"}
    assert "expected tiny/gdn/seed0.json" in reasons["tiny/gsa/seed0.json"]
    assert "expected tiny/gdn/seed0.json" in reasons["tiny/gdn/seed7.json"]
    assert cli.main(["validate", str(root / "tiny" / "gsa" / "seed0.json")]) == 1
