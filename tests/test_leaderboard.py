"""Validation, the leaderboard and the plots, on result files made from synthetic rollouts."""

from __future__ import annotations

import copy
import json

import matplotlib.image
import pytest

from bench import cli
from bench.perf.backbones import scaling_record
from bench.report import results
from bench.report.leaderboard import _peak_memory, collect, render, write_leaderboard
from bench.report.plot import arch_color, make_plots
from bench.report.validate import validate_doc
from tests.fixtures_results import EVAL_STEPS, make_result


@pytest.fixture(scope="module")
def good() -> dict:
    return make_result("gdn", seed=0, skill=0.7)


def test_consistent_result_validates(good):
    assert validate_doc(good) == []


def test_records_hold_per_task_anchored_scores(good):
    tasks = good["interactive"]["agents"]["model"]["tasks"]
    assert len(tasks["anchored"]) == len(tasks["ns"]) == len(tasks["group"]) == 12
    assert {len(row) for row in tasks["anchored"]} == {64} and good["interactive"]["eval_steps"] == EVAL_STEPS


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda d: d["interactive"]["agents"]["model"]["overall"].__setitem__("final", 0.99), "overall.final"),
        (
            lambda d: d["interactive"]["agents"]["model"]["groups"]["ns=8"]["curve"]["mean"].__setitem__(5, 0.123),
            "curve.mean[5]",
        ),
        (lambda d: d["interactive"]["agents"]["oracle"]["overall"].__setitem__("few_shot", 0.5), "few_shot"),
        (lambda d: d["interactive"]["agents"]["tql_ucb"]["tasks"]["anchored"][0].__setitem__(0, 9.0), "tql_ucb"),
        (
            lambda d: d["ood"]["by_task"]["frozenlake-4x4"]["agents"]["model"]["overall"].__setitem__("gain", 1),
            "ood.by_task.frozenlake-4x4.agents.model.overall.gain",
        ),
    ],
)
def test_an_edited_number_is_caught(good, edit, where):
    doc = copy.deepcopy(good)
    edit(doc)
    reasons = validate_doc(doc)
    assert len(reasons) == 1 and where in reasons[0]


def test_older_schemas_are_refused_with_the_reason(good):
    for version in (1, 2):
        reasons = validate_doc({**copy.deepcopy(good), "schema_version": version})
        assert reasons[0].startswith(f"result.schema_version: {version} is not supported; this code reads 3")
        assert "biased single-rollout scores" in reasons[0]


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
    for arch, skill in (("gdn", 0.8), ("rwkv7", 0.797), ("lstm", 0.3)):
        for seed in (0, 1, 2):
            results.write_result(make_result(arch, seed, skill), root)
    results.write_result(make_result("transformer", 0, 0.5), root)  # one seed: provisional
    edited = make_result("gsa", 0, 0.5)
    edited["interactive"]["agents"]["model"]["overall"]["final"] = 0.95
    (root / "tiny" / "gsa").mkdir(parents=True)
    (root / "tiny" / "gsa" / "seed0.json").write_text(json.dumps(edited))
    (root / "tiny" / "gsa" / "seed1.json").write_text("{not json")
    return root


def _table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines() if line.startswith("| ")]


def test_leaderboard_ranks_with_tests_and_keeps_provisional_rows_apart(results_dir, tmp_path):
    out, accepted, refused = write_leaderboard(results_dir, tmp_path / "leaderboard.md")
    text = out.read_text()
    assert len(accepted["tiny"]) == 10 and len(refused) == 2
    ranked = [row for row in _table_rows(text) if len(row) > 2 and row[1].startswith("`") and row[2] == "3"]
    assert [row[1] for row in ranked] == ["`gdn`", "`rwkv7`", "`lstm`"]
    assert [row[0] for row in ranked] == ["=1", "=1", "3"]  # 0.800 vs 0.797: not separable; lstm below
    assert all(row[9].startswith("> random (p ") and row[9].endswith("runs > random: 3/3") for row in ranked)
    assert "- `gdn` and `rwkv7` are not separable: IQM difference" in text
    assert "- `rwkv7` > `lstm`: IQM difference" in text
    assert "(not separable on the mean)" in text and "(separable on the mean)" in text
    assert "Provisional: fewer than 3 seeds, **not ranked**" in text
    assert any(row[:2] == ["`transformer`", "1"] for row in _table_rows(text))
    for label in ("oracle (finite-horizon optimum)", "uniform random", "TQL-UCB"):
        assert f"*{label}*" in text
    assert "P(row > column), final score" in text
    assert "Refused result files" in text
    assert "### Out of distribution: the paper's Table 1 tasks (`tiny`)" in text
    assert any(row[:2] == ["`gdn`", "3"] for row in _table_rows(text.split("### Out of distribution")[1]))
    assert "Not applicable at this preset: cliffwalking (49 states)." in text
    assert "seed0.json` | interactive.agents.model.overall.final" in text
    assert "seed1.json` |" in text and "not valid JSON" in text


def test_leaderboard_is_deterministic(results_dir):
    first = render(*collect(results_dir))
    second = render(*collect(results_dir))
    assert first == second


def test_plots_are_written_and_not_blank(results_dir, tmp_path):
    written = make_plots(results_dir, tmp_path / "plots")
    names = sorted(path.name for path in written)
    for stem in ("tiny_curves", "tiny_profile", "tiny_poi", "tiny_offline_loss"):
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
    assert "overall.final" in capsys.readouterr().out


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
