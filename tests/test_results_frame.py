"""Result files as a tidy DataFrame, and `python -m bench results --csv`."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from bench import cli
from bench.report import results
from bench.report.frame import COLUMNS, results_frame
from tests.fixtures_results import make_result


def test_frame_holds_every_summary_score_once():
    docs = [make_result("gdn", seed, 0.7) for seed in (0, 1)] + [make_result("lstm", 0, 0.3)]
    frame = results_frame(docs)
    assert list(frame.columns) == list(COLUMNS)
    assert not frame.duplicated(["preset", "arch", "seed", "agent", "suite", "task", "group", "metric"]).any()
    row = frame.query("arch == 'gdn' and seed == 1 and agent == 'model' and suite == 'test' and group == 'ns=8'")
    value = row[row.metric == "final"].value.item()
    assert value == docs[1]["interactive"]["agents"]["model"]["groups"]["ns=8"]["final"]
    lake = frame.query("suite == 'ood' and task == 'frozenlake-4x4' and agent == 'oracle' and metric == 'few_shot'")
    assert len(lake) == 3 * 2  # overall and its one group, for each of the three results
    offline = frame.query("suite == 'offline' and metric == 'action_ce'")
    assert offline.value.tolist() == [doc["offline"]["overall"]["action_ce"] for doc in docs]


def test_results_command_writes_csv_and_refuses_what_it_cannot(tmp_path, capsys):
    root = tmp_path / "results"
    for seed in (0, 1):
        results.write_result(make_result("gdn", seed, 0.7), root)
    out = tmp_path / "table.csv"
    assert cli.main(["results", "--results", str(root), "--csv", str(out)]) == 0
    read = pd.read_csv(out)
    assert set(read.seed) == {0, 1} and set(read.suite) == {"test", "ood", "offline"}
    capsys.readouterr()
    assert cli.main(["results", "--results", str(root)]) == 2
    assert "give --csv FILE and/or --parquet FILE" in capsys.readouterr().err
    assert cli.main(["results", "--results", str(tmp_path / "nowhere"), "--csv", str(out)]) == 2
    assert "no such folder" in capsys.readouterr().err
    if importlib.util.find_spec("pyarrow") is None:
        assert cli.main(["results", "--results", str(root), "--parquet", str(tmp_path / "t.parquet")]) == 2
        assert "needs the pyarrow package" in capsys.readouterr().err
    else:
        pytest.skip("pyarrow installed: the refusal cannot be shown")
