"""Several processes, one run: 2 gloo ranks on 127.0.0.1 give the weights and the result of one
process, errors reach every rank, only rank 0 writes, and shards built apart are byte-identical."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import shutil
import socket
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from unittest import mock

import pytest
import torch
from micro_digest import MICRO

from architectures.gdn import GatedDeltaNet
from bench import distributed, rollout
from bench import recipe as R
from bench import train as T
from bench.data import shards
from bench.errors import BenchError
from bench.model import ICRLModel
from bench.presets import PRESETS, get_preset
from bench.report import results
from bench.run import RunOptions, run

TINY = get_preset("tiny")
TRAIN_MICRO = dataclasses.replace(
    TINY,
    d_model=16,
    recipe=dataclasses.replace(
        TINY.recipe,
        segment_len=8,
        batch_size=4,
        train_steps=4,
        lr=3e-3,
        warmup_steps=2,
        position_ramp_steps=8,
        checkpoint_every=2,
    ),
)
# The micro run of tests/micro_digest.py, with shorter rollouts.
RUN_MICRO = dataclasses.replace(
    MICRO, recipe=dataclasses.replace(MICRO.recipe, eval_steps=300, temperature=(1.0, 0.1, 300))
)


# ---- launching ranks ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world_size: int, port: int, out: Path, fn, args) -> None:
    """One rank: torchrun's environment, the process group, `fn(*args)`; the outcome to out/rank<r>.pt."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        BENCH_DIST_TIMEOUT_S="60",
    )
    torch.set_num_threads(1)
    try:
        with distributed.process_group("cpu"):
            outcome = {"value": fn(*args)}
    except BenchError as err:
        outcome = {"error": str(err)}
    except Exception:  # anything else is a test failure: report it whole
        outcome = {"crash": traceback.format_exc()}
    torch.save(outcome, out / f"rank{rank}.pt")


def launch(tmp_path: Path, world_size: int, fn, *args) -> list[dict]:
    """Run `fn(*args)` on `world_size` spawned gloo ranks; each rank's {"value"|"error"|"crash"|"exit"}."""
    out = tmp_path / "outcomes"
    out.mkdir(exist_ok=True)
    context = multiprocessing.get_context("spawn")
    port = free_port()
    procs = [context.Process(target=_rank_main, args=(r, world_size, port, out, fn, args)) for r in range(world_size)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    outcomes = []
    for r, p in enumerate(procs):
        if p.is_alive():
            p.kill()
        path = out / f"rank{r}.pt"
        outcomes.append(torch.load(path, weights_only=False) if path.exists() else {"exit": p.exitcode})
    for o in outcomes:
        assert "crash" not in o, o["crash"]
    return outcomes


# ---- training: 2 ranks = 1 process with the same global batch ------------------------------------


def micro_model() -> ICRLModel:
    return ICRLModel(GatedDeltaNet(16, n_layers=1, n_heads=2, mlp_hidden=16, seed=0), TRAIN_MICRO, seed=1)


def global_batch(seed: int) -> dict[str, torch.Tensor]:
    """4 x 24 steps; episode lengths differ per row, so the ranks' next-observation totals differ."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 8, (4, 24), generator=g)
    done = torch.zeros(4, 24, dtype=torch.bool)
    for row, every in enumerate((3, 4, 11, 23)):
        done[row, every - 1 :: every] = True
    return {
        "obs": obs,
        "prompt": torch.zeros(4, 24, dtype=torch.long),
        "tag": torch.ones(4, 24, dtype=torch.long),
        "action": torch.randint(0, 5, (4, 24), generator=g),
        "label": obs % 5,
        "reward": (obs % 5 == 0).float(),
        "done": done,
        "ns": torch.full((4,), 8),
    }


def batches(epoch: int, rank: int, world_size: int):
    local = 4 // world_size
    return [
        {k: v[rank * local : (rank + 1) * local] for k, v in global_batch(10 * epoch + i).items()} for i in range(3)
    ]


@contextlib.contextmanager
def optimiser(name: str):
    """The recipe's AdamW, or plain SGD in its place (same groups, lr schedule and clipping)."""
    if name == "adamw":
        yield
        return
    with mock.patch.object(torch.optim, "AdamW", lambda groups, lr, betas: torch.optim.SGD(groups, lr=lr)):
        yield


def trained(run_dir: Path, model: dict, losses: list[float]) -> dict:
    """What the comparison needs of a run: weights, loss curve, the optimiser's settings (checkpoint)."""
    group = torch.load(run_dir / T.CHECKPOINT_NAME, weights_only=False)["optimizer"]["param_groups"][0]
    return {"weights": {k: v.clone() for k, v in model.items()}, "losses": losses, "group": group}


def train_micro(run_dir: Path, name: str = "adamw") -> dict:
    model = micro_model()
    with optimiser(name):
        result = T.train(model, TRAIN_MICRO.recipe, batches, run_dir, RunOptions(progress=False, threads=1))
    return trained(run_dir, model.state_dict(), [loss for _, loss in result.loss_curve]) | {"tokens": result.tokens}


def train_micro_both(run_dir: Path) -> dict:
    return {name: train_micro(run_dir / name, name) for name in ("adamw", "sgd")}


def test_ddp_denominators_and_mask_rows_match_the_global_batch():
    assert distributed.ddp_denominators({"a": torch.tensor(6.0)}) == {"a": torch.tensor(6.0)}  # one process: unchanged
    g = torch.Generator().manual_seed(3)
    batch = global_batch(0)
    whole = R.prepare_batch(batch, 99, 0.5, g.manual_seed(3))["obs"]
    halves = [
        R.prepare_batch({k: v[2 * r : 2 * r + 2] for k, v in batch.items()}, 99, 0.5, g.manual_seed(3), (r, 2))["obs"]
        for r in range(2)
    ]
    assert torch.equal(torch.cat(halves), whole) and (whole == 99).any()


# ---- comparing a run of 2 ranks with one process ----------------------------------------------------
# DDP sums gradients in another order than one process: the gradients agree to rounding, not bit for bit.

LOSS_RTOL = 1e-5
"""Loss curves: each step's loss is computed on weights that agree to rounding (see below)."""
GRAD_ATOL = 1e-5
"""SGD: per-element gradient difference allowed, as a fraction of `grad_clip` (clipped gradients
are at most grad_clip per element; fp32 sums in another order differ by ~1e-7 of their terms)."""
AGREE_ATOL, AGREE_FRACTION = 1e-6, 0.999
"""AdamW: the fraction of weights that must agree to AGREE_ATOL (see assert_same_weights)."""


def lr_total(recipe) -> float:
    """sum_t lr_t over the run's steps: the schedule of bench/train.py (LambdaLR of lr_factor)."""
    return sum(recipe.lr * T.lr_factor(s, recipe.warmup_steps, recipe.train_steps) for s in range(recipe.train_steps))


def weight_differences(got: dict, want: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """|a - b| of every weight, and |b|."""
    assert got["weights"].keys() == want["weights"].keys()
    a, b = (torch.cat([run["weights"][k].double().flatten() for k in want["weights"]]) for run in (got, want))
    return (a - b).abs(), b.abs()


def assert_same_losses(got: dict, want: dict) -> None:
    assert got["losses"] == pytest.approx(want["losses"], rel=LOSS_RTOL)


def assert_same_weights(got: dict, want: dict, recipe) -> None:
    """`got` (2 ranks) took the steps of `want` (one process on the global batch).

    SGD: a weight moves by lr_t * g_t, rounded to fp32, so |a - b| <= sum_t (lr_t * |g_a - g_b| +
    eps * |w|): every weight must agree to sum_t lr_t * grad_clip * GRAD_ATOL (9e-8 for the micro
    recipe) plus one ulp of the weight per step, a bound that holds on any CPU.

    AdamW: a weight moves by lr_t * m/(sqrt(v) + eps); for a gradient near 0 the last-bit rounding
    of the all-reduce changes that ratio by O(1), so a few weights may differ by up to the update
    size itself. By Cauchy-Schwarz |m/sqrt(v)| <= (1-b1)/sqrt((1-b2)(1-b1^2/b2)) (1.17 for the
    recipe's betas), and decoupled decay only shrinks a difference, so every |a - b| is at most
    2 * 1.17 * sum_t lr_t; that cap holds for any AdamW run, so the test is that all the same
    nearly every weight agrees to AGREE_ATOL, which a run whose gradients differ beyond rounding
    (a wrong rank weighting) does not."""
    diff, size = weight_differences(got, want)
    assert got["group"].keys() == want["group"].keys()  # the same optimiser
    if "betas" not in want["group"]:  # SGD
        rounding = recipe.train_steps * torch.finfo(torch.float32).eps * size
        excess = diff - rounding - lr_total(recipe) * recipe.grad_clip * GRAD_ATOL
        assert excess.max() <= 0, f"max |a - b| = {diff.max():.3g}, {int((excess > 0).sum())} weights beyond the bound"
        return
    b1, b2 = want["group"]["betas"]
    cap = 2 * (1 - b1) / math.sqrt((1 - b2) * (1 - b1**2 / b2)) * lr_total(recipe)
    assert diff.max() <= cap, f"max |a - b| = {diff.max():.3g} > {cap:.3g}"
    agree = float((diff <= AGREE_ATOL).double().mean())
    assert agree >= AGREE_FRACTION, (
        f"{agree:.4%} of {diff.numel()} weights agree to {AGREE_ATOL} (max |a - b| = {diff.max():.3g})"
    )


# ---- the whole run: same result, one writer, errors on every rank ---------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    shards.build(RUN_MICRO, root, workers=1, progress=False)
    return root


def run_options(tmp_path: Path, data_root: Path) -> RunOptions:
    return RunOptions(
        out=tmp_path / "results", run_dir=tmp_path / "runs", data_root=str(data_root), progress=False, threads=1
    )


def run_micro(preset, options: RunOptions, per_rank_roots: list[str] | None = None) -> str:
    if per_rank_roots is not None:  # node-local data: each rank looks in its own folder
        options = dataclasses.replace(options, data_root=per_rank_roots[distributed.dist_info()[0]])
    (path,) = run("gdn", preset, [0], options)
    return str(path)


def train_and_run(train_dir: Path, preset, options: RunOptions) -> dict:
    """Both checks of one launch (each launch costs seconds of process start): the recipe, then the run."""
    return {"train": train_micro_both(train_dir), "result": run_micro(preset, options)}


def test_two_ranks_train_and_evaluate_like_one_process_and_rank_0_writes_once(built, tmp_path):
    halves = [batches(0, r, 2)[0] for r in range(2)]
    valid = [int((~h["done"][:, :-1]).sum()) for h in halves]
    assert valid[0] != valid[1]  # per-rank loss means would weight the halves unequally
    single_train = train_micro_both(tmp_path / "single-train")
    (single_path,) = run("gdn", RUN_MICRO, [0], run_options(tmp_path / "single", built))
    ranks = launch(tmp_path, 2, train_and_run, tmp_path / "ddp-train", RUN_MICRO, run_options(tmp_path / "ddp", built))

    # the recipe: after 4 AdamW (and 4 plain SGD) steps, the weights of one process on the global batch
    for outcome in ranks:
        for name, want in single_train.items():
            got = outcome["value"]["train"][name]
            assert got["tokens"] == want["tokens"]
            assert_same_losses(got, want)
            assert_same_weights(got, want, TRAIN_MICRO.recipe)
    assert torch.load(tmp_path / "ddp-train" / "adamw" / T.CHECKPOINT_NAME, weights_only=False)["step"] == 4

    # the run: one result file, by rank 0, equal to the one-process result
    assert [o["value"]["result"] for o in ranks] == [
        str(tmp_path / "ddp" / "results" / "tiny" / "gdn" / "seed0.json")
    ] * 2
    assert sorted(p.name for p in (tmp_path / "ddp" / "results").rglob("*") if p.is_file()) == ["seed0.json"]
    single, _ = results.load_result(single_path)
    doc, reasons = results.load_result(ranks[0]["value"]["result"])
    assert reasons == []
    assert doc["interactive"] == single["interactive"]  # the model's half of the tasks per rank, gathered each step
    assert [loss for _, loss in doc["training"]["loss_curve"]] == pytest.approx(
        [loss for _, loss in single["training"]["loss_curve"]], rel=1e-5
    )
    assert doc["offline"]["overall"] == pytest.approx(single["offline"]["overall"], rel=1e-4)
    a, b = (checkpoint_run(tmp_path / kind / "runs" / "tiny" / "gdn" / "seed0") for kind in ("single", "ddp"))
    assert_same_weights(b, a, RUN_MICRO.recipe)  # 405,502 weights


def checkpoint_run(run_dir: Path) -> dict:
    saved = torch.load(run_dir / T.CHECKPOINT_NAME, weights_only=False)
    return trained(run_dir, saved["model"], [loss for _, loss in saved["loss_curve"]])


# ---- the comparison fails when ranks are weighted wrongly -------------------------------------------

_ddp_denominators = distributed.ddp_denominators
BUGS = {
    # each rank divides by its own totals: the halves (34 and 43 next-observation targets) weigh unequally
    "per-rank means": lambda totals: dict(totals),
    # rank 1's loss, so its gradient, counted twice
    "rank 1 twice": lambda totals: {
        k: v / (1 + distributed.dist_info()[0]) for k, v in _ddp_denominators(totals).items()
    },
}


def train_with_bugs(run_dir: Path) -> dict:
    out = {}
    for bug, denominators in BUGS.items():
        with mock.patch.object(distributed, "ddp_denominators", denominators):
            out[bug] = train_micro_both(run_dir / bug.replace(" ", "-"))
    return out


def test_the_comparison_fails_when_the_ranks_are_weighted_wrongly(tmp_path):
    """The checks of the test above, on a 2-rank run whose gradient is not the global batch's."""
    single = train_micro_both(tmp_path / "single")
    bugged = launch(tmp_path, 2, train_with_bugs, tmp_path / "ddp")[0]["value"]
    for runs in bugged.values():
        for name, got in runs.items():
            with pytest.raises(AssertionError, match="weights agree to|weights beyond the bound"):
                assert_same_weights(got, single[name], TRAIN_MICRO.recipe)
            with pytest.raises(AssertionError):
                assert_same_losses(got, single[name])


def failures(out: Path, built: Path, tmp_path: Path) -> dict:
    """On every rank: a batch the world does not divide, a shard missing on rank 1 only, then rank 1 dies."""
    rank = distributed.dist_info()[0]
    seen = {}
    odd = dataclasses.replace(RUN_MICRO, recipe=dataclasses.replace(RUN_MICRO.recipe, batch_size=3))
    roots = [str(tmp_path / "node0"), str(tmp_path / "node1")]
    for name, call in (
        ("odd_batch", lambda: run_micro(odd, run_options(tmp_path, built))),
        ("missing_shard", lambda: run_micro(RUN_MICRO, run_options(tmp_path, built), roots)),
    ):
        try:
            seen[name] = call()
        except BenchError as err:
            seen[name] = str(err)
    if rank == 1:
        torch.save({"value": seen}, out / "rank1.pt")
        os._exit(3)
    try:
        distributed.collective("the end of evaluation", lambda: None)
    except BenchError as err:
        seen["dead_rank"] = str(err)
    return seen


def test_bad_batch_missing_shard_and_dead_rank_are_one_line_errors_on_every_rank(built, tmp_path):
    for node in ("node0", "node1"):
        shutil.copytree(built, tmp_path / node)
    shutil.rmtree(tmp_path / "node1" / "train" / "shard-00001")
    ranks = [o["value"] for o in launch(tmp_path, 2, failures, tmp_path / "outcomes", built, tmp_path)]
    for seen in ranks:
        assert "batch_size=3 is not divisible by world_size=2" in seen["odd_batch"] and "[1, 3]" in seen["odd_batch"]
        error = seen["missing_shard"]
        assert "the data check failed on 1 of 2 ranks: rank 1: train shard 1 is missing" in error
        assert "--shard 1/2" in error and "\n" not in error
    assert ranks[0]["dead_rank"].startswith("rank 0: lost contact with another rank during the end of evaluation")
    assert "\n" not in ranks[0]["dead_rank"]
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()


def test_task_slices_cover_every_task_once():
    for n in (1, 5, 6, 7):
        blocks = [rollout.task_slice(n, r, 3) for r in range(3)]
        assert [i for b in blocks for i in range(n)[b]] == list(range(n))
    assert rollout.shard_agent("agent", 5) == "agent"  # one process: the agent itself
    assert distributed.dist_info() == (0, 1)


def test_bad_torchrun_environment_is_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(BenchError, match="WORLD_SIZE='two'"):
        distributed.setup("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(BenchError, match="RANK is not set; launch with torchrun"):
        distributed.setup("cpu")


# ---- data built by two workers at once ------------------------------------------------------------


def _build_part(args) -> None:
    preset, root, part = args
    shards.build(preset, root, shard=part, workers=1, progress=False)


def test_two_concurrent_shard_workers_build_the_same_bytes(built, tmp_path):
    """`bench data build --shard 0/2` and `--shard 1/2` running at the same time, as two machines would."""
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_build_part, [(RUN_MICRO, tmp_path, (k, 2)) for k in range(2)]))
    files = sorted(str(p.relative_to(built)) for p in built.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert all(shards.sha256_file(built / f) == shards.sha256_file(tmp_path / f) for f in files)
    assert json.loads((tmp_path / "train" / "manifest.json").read_text())["n_sequences"] == 8


# ---- the training-step measurement behind docs/gpu.md ----------------------------------------------


def test_measure_times_training_steps_of_the_preset_model():
    from bench.perf.train import measure

    row = measure("lstm", "tiny", steps=1, segment=8, seq_len=16, batch=2, device=torch.device("cpu"))
    assert row["backbone"] == "lstm" and row["layout"] == PRESETS["tiny"].recipe.layout
    assert row["params (M)"] == pytest.approx(0.41, abs=0.01)  # parameters of the tiny model
    assert row["env steps/s"] == pytest.approx(2 * 16 / row["s/step"])
    assert row["tokens/s"] == pytest.approx(row["env steps/s"] * R.LAYOUTS[row["layout"]].tokens_per_step)
    assert row["peak mem (MiB)"] >= 0
