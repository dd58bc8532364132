"""`python -m bench eval`: a trained checkpoint rolled out on the test, valid and fresh suites."""

from __future__ import annotations

import json

import pytest
import torch

from bench import cli
from bench.data import split as sp
from bench.errors import BenchError
from bench.presets import get_preset
from bench.run import RunOptions, run
from bench.suites import load_suite, valid_groups

SMOKE = get_preset("smoke")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One finished smoke run of gdn: (tmp folder, result path)."""
    tmp = tmp_path_factory.mktemp("smoke-eval")
    options = RunOptions(
        out=tmp / "results", run_dir=tmp / "runs", data_root=str(tmp / "data"), progress=False, threads=1
    )
    (path,) = run("gdn", SMOKE, [0], options)
    return tmp, path


def eval_cli(tmp, *argv: str) -> int:
    return cli.main(["eval", *argv, "--run-dir", str(tmp / "runs")])


def test_eval_on_test_reproduces_the_result_files_rollouts(smoke_run):
    tmp, path = smoke_run
    assert eval_cli(tmp, "--result", str(path), "--suite", "test") == 0
    record = json.loads((tmp / "runs/smoke/gdn/seed0/eval/test.json").read_text())
    assert record["kind"] == "anymdp-bench-eval" and record["checkpoint"]["step"] == SMOKE.recipe.train_steps
    assert record["interactive"] == json.loads(path.read_text())["interactive"]


def test_eval_on_valid_groups_tasks_in_two_halves_of_the_training_range(smoke_run, capsys):
    tmp, _ = smoke_run
    out = tmp / "valid.json"
    assert eval_cli(tmp, "--arch", "gdn", "--preset", "smoke", "--suite", "valid", "--out", str(out)) == 0
    record = json.loads(out.read_text())
    groups = set(record["interactive"]["agents"]["model"]["groups"])
    assert groups <= {"ns=8-12", "ns=13-16"} and groups
    assert record["interactive"]["n_tasks"] + record["interactive"]["skipped_tasks"] == SMOKE.data.valid_tasks
    out_text = capsys.readouterr().out
    assert "ns=8-12" in out_text and "sd of the overall final score over disjoint sets of m rollouts" in out_text
    assert [m for m, _ in record["interactive"]["rollout_noise"]["model"]] == [1, 2, 4]  # 8 rollouts
    assert valid_groups(SMOKE, [8, 12, 13, 16]) == ["ns=8-12", "ns=8-12", "ns=13-16", "ns=13-16"]


def test_eval_takes_a_temperature_schedule_to_tune_on_valid(smoke_run):
    tmp, path = smoke_run
    out = tmp / "valid-cold.json"
    argv = ["--result", str(path), "--suite", "valid", "--rollouts", "2", "--out", str(out)]
    assert eval_cli(tmp, *argv, "--temperature", "0.01", "0.01", "0") == 0  # near greedy
    cold = json.loads(out.read_text())
    assert cold["temperature"] == [0.01, 0.01, 0] and cold["interactive"]["rollouts"] == 2
    assert eval_cli(tmp, *argv, "--overwrite") == 0
    default = json.loads(out.read_text())
    assert default["temperature"] == list(SMOKE.recipe.temperature)
    # the baselines act the same at any temperature; the model does not
    for agent in ("oracle", "random", "tql_ucb"):
        same = cold["interactive"]["agents"][agent] == default["interactive"]["agents"][agent]
        assert same, agent
    assert cold["interactive"]["agents"]["model"] != default["interactive"]["agents"]["model"]


def test_eval_on_fresh_tasks_reports_test_minus_fresh_with_an_interval(smoke_run, capsys):
    tmp, path = smoke_run
    assert eval_cli(tmp, "--result", str(path), "--suite", "fresh", "--nonce", "3") == 0
    record = json.loads((tmp / "runs/smoke/gdn/seed0/eval/fresh-nonce3.json").read_text())
    comparison = record["test_minus_fresh"]
    assert comparison["ci"][0] <= comparison["difference"] <= comparison["ci"][1]
    assert comparison["difference"] == pytest.approx(comparison["test"] - comparison["fresh"])
    assert "test - fresh" in capsys.readouterr().out
    fresh = {t.fingerprint() for t in load_suite("fresh", SMOKE, 3).tasks}
    assert not fresh & {t.fingerprint() for t in load_suite("test", SMOKE).tasks}
    assert not fresh & {t.fingerprint() for t in load_suite("fresh", SMOKE, 4).tasks}


def test_eval_refuses_what_it_cannot_evaluate(smoke_run, capsys):
    tmp, path = smoke_run
    checkpoint = tmp / "runs/smoke/gdn/seed0/checkpoint.pt"
    for argv, words in (
        (["--result", str(path), "--suite", "fresh"], "--nonce N is required by --suite fresh"),
        (["--result", str(path), "--suite", "test", "--nonce", "1"], "--nonce applies to --suite fresh only"),
        (["--result", str(path), "--suite", "fresh", "--nonce", "-1"], "nonce must be an int in [0, 2**32)"),
        (["--result", str(path), "--suite", "test", "--seed", "1"], "drop --preset, --seed and --arch-kwargs"),
        (["--arch", "gdn", "--preset", "smoke", "--seed", "5", "--suite", "test"], "no checkpoint at"),
        (["--arch", "gdn", "--preset", "smoke", "--suite", "test", "--steps", "2"], "--steps 2: accepted"),
        (["--arch", "gdn", "--preset", "smoke", "--suite", "test", "--rollouts", "0"], "--rollouts 0: accepted"),
        (["--result", str(path), "--suite", "valid", "--temperature", "0", "1", "5"], "--temperature 0 1 5: accepted"),
        (["--result", str(path), "--suite", "valid", "--temperature", "1", "1", "2.5"], "STEPS a non-negative int"),
        (["--result", str(tmp / "missing.json"), "--suite", "test"], "is not a valid result file"),
    ):
        assert eval_cli(tmp, *argv) == 2, argv
        assert words in capsys.readouterr().err
    # an unfinished run is refused unless --partial; weights of another backbone do not fit
    saved = torch.load(checkpoint, weights_only=False)
    torch.save({**saved, "step": 5, "meta": {**saved["meta"], "seed": 7}}, _seed_checkpoint(tmp, 7))
    assert eval_cli(tmp, "--arch", "gdn", "--preset", "smoke", "--seed", "7", "--suite", "test") == 2
    assert "is at step 5 of 12" in capsys.readouterr().err
    argv = ["--arch", "gdn", "--preset", "smoke", "--seed", "7", "--suite", "test", "--partial"]
    assert eval_cli(tmp, *argv, "--out", str(tmp / "partial.json")) == 0
    capsys.readouterr()
    assert eval_cli(tmp, *argv, "--out", str(tmp / "partial.json")) == 2  # never over an existing record
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert eval_cli(tmp, *argv, "--out", str(tmp / "partial.json"), "--overwrite") == 0
    capsys.readouterr()
    # a checkpoint of another run (its recorded preset, arch or seed differ) is refused
    torch.save(saved, _seed_checkpoint(tmp, 8))
    assert eval_cli(tmp, "--arch", "gdn", "--preset", "smoke", "--seed", "8", "--suite", "test") == 2
    assert (
        "was trained as 'smoke' / 'gdn' / seed 0, not 'smoke' / 'gdn' / seed 8 (seed differs)"
        in capsys.readouterr().err
    )
    assert eval_cli(tmp, "--arch", "lstm", "--preset", "smoke", "--seed", "0", "--suite", "test") == 2
    assert "no checkpoint at" in capsys.readouterr().err
    torch.save({**saved, "meta": {}}, _seed_checkpoint(tmp, 0, "lstm"))  # no record of its run: loaded, and
    assert eval_cli(tmp, "--arch", "lstm", "--preset", "smoke", "--suite", "test") == 2
    assert "does not fit the model of lstm at smoke" in capsys.readouterr().err
    torch.save(saved, _seed_checkpoint(tmp, 0, "lstm"))
    assert eval_cli(tmp, "--arch", "lstm", "--preset", "smoke", "--suite", "test") == 2
    assert "was trained as 'smoke' / 'gdn' / seed 0" in capsys.readouterr().err


def _seed_checkpoint(tmp, seed: int, arch: str = "gdn"):
    folder = tmp / "runs" / "smoke" / arch / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "checkpoint.pt"


def test_fresh_seeds_never_meet_the_split_or_other_nonces():
    preset = get_preset("tiny")
    split = {seed for *_, seed in sp.test_task_specs(preset)}
    split |= {sp.valid_task_seed(preset, i) for i in range(preset.data.valid_tasks)}
    split |= {sp.train_task_seed(preset, i) for i in (0, 1, preset.data.train_tasks - 1)}
    fresh = {nonce: {seed for *_, seed in sp.fresh_task_specs(preset, nonce)} for nonce in (0, 1, 2**32 - 1)}
    for seeds in fresh.values():
        assert not seeds & split and len(seeds) == len(split & {s for *_, s in sp.test_task_specs(preset)})
        assert all((seed >> sp.INDEX_BITS) & 3 == sp.ROLES["fresh"] for seed in seeds)
    assert all(((seed >> sp.INDEX_BITS) & 3) != sp.ROLES["fresh"] for seed in split)  # the role bits differ
    assert not fresh[0] & fresh[1] and not fresh[1] & fresh[2**32 - 1]
    with pytest.raises(BenchError, match="nonce must be an int"):
        sp.fresh_task_specs(preset, 2**32)


def test_eval_on_the_ood_suite_scores_each_applicable_table1_task(smoke_run, capsys):
    tmp, path = smoke_run
    out = tmp / "ood.json"
    assert eval_cli(tmp, "--result", str(path), "--suite", "ood", "--out", str(out)) == 0
    record = json.loads(out.read_text())["interactive"]
    assert set(record["by_task"]) == {"garnet-16-5-2", "frozenlake-4x4", "frozenlake-4x4-slippery"}
    assert "49 states" in record["not_applicable"]["cliffwalking"]  # the smoke model embeds 16 ids
    lake = record["by_task"]["frozenlake-4x4"]["agents"]
    assert lake["oracle"]["overall"]["final"] == pytest.approx(1.0)  # deterministic: every episode optimal
    assert lake["model"]["overall"]["n_tasks"] == 16
    printed = capsys.readouterr().out
    assert "frozenlake-4x4-slippery" in printed and "not applicable" in printed
