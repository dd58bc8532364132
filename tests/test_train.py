"""The chunkwise recipe: determinism, resume equivalence, NaN stop, interrupt, schedule, loss."""

from __future__ import annotations

import dataclasses
import importlib.machinery
import sys

import pytest
import torch

from architectures.gsa import GatedSlotAttention
from bench import recipe as R
from bench import train as T
from bench.errors import BenchError
from bench.model import ICRLModel
from bench.options import RunOptions
from bench.presets import get_preset
from bench.train_log import LOG_NAME, read_log, tensorboard_available

MICRO = dataclasses.replace(
    get_preset("tiny"),
    d_model=16,
    recipe=dataclasses.replace(
        get_preset("tiny").recipe,
        segment_len=8,
        batch_size=4,
        train_steps=6,
        lr=3e-3,
        warmup_steps=2,
        position_ramp_steps=8,
        checkpoint_every=2,
    ),
)


def micro_model(preset=MICRO, seed: int = 0) -> ICRLModel:
    backbone = GatedSlotAttention(preset.d_model, n_layers=1, n_heads=2, n_slots=4, mlp_hidden=16, seed=seed)
    return ICRLModel(backbone, preset, seed=seed + 1)


def synthetic_batch(seed: int, batch: int = 4, length: int = 24) -> dict[str, torch.Tensor]:
    """Episodes of 6 steps; the label is a fixed function of the observation, so it can be learned."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 8, (batch, length), generator=g)
    done = torch.zeros(batch, length, dtype=torch.bool)
    done[:, 5::6] = True
    return {
        "obs": obs,
        "prompt": torch.zeros(batch, length, dtype=torch.long),
        "tag": torch.ones(batch, length, dtype=torch.long),
        "action": torch.randint(0, 5, (batch, length), generator=g),
        "label": obs % 5,
        "reward": (obs % 5 == 0).float(),
        "done": done,
        "ns": torch.full((batch,), 8),
    }


def source(n_batches: int = 3, seed: int = 0):
    def batches(epoch: int, rank: int, world_size: int):
        return [synthetic_batch(seed * 1000 + epoch * 100 + i) for i in range(n_batches)]

    return batches


def train(model, recipe, batches, checkpoint_dir, resume: bool = False, restart: bool = False, **kw) -> T.TrainResult:
    options = RunOptions(progress=False, threads=1, resume=resume, restart=restart)
    return T.train(model, recipe, batches, checkpoint_dir, options, **kw)


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


def test_lr_schedule_and_position_weights():
    assert T.lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert T.lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert T.lr_factor(10, 10, 100) == pytest.approx(1.0)
    assert T.lr_factor(100, 10, 100) == pytest.approx(T.FINAL_LR_FRACTION)
    w = R.position_weights(6, 4)
    assert w[0] == pytest.approx(R.RAMP_FLOOR) and w[4:].tolist() == [1.0, 1.0]
    assert (w[1:] >= w[:-1]).all()
    assert R.position_weights(3, 0).tolist() == [1.0, 1.0, 1.0]


def test_prepare_batch_targets():
    batch = synthetic_batch(0, batch=1, length=12)
    p = R.prepare_batch(batch, mask_id=16, mask_prob=0.0, generator=torch.Generator().manual_seed(0))
    assert p["first"][0].nonzero().flatten().tolist() == [0, 6]
    assert p["prev_reward"][0, 0] == 0 and p["prev_reward"][0, 1:].tolist() == batch["reward"][0, :-1].tolist()
    assert p["next_obs"][0, :5].tolist() == batch["obs"][0, 1:6].tolist()
    assert not p["next_valid"][0, 5] and not p["next_valid"][0, 11] and p["next_valid"][0, :5].all()
    masked = R.prepare_batch(batch, 16, 1.0, torch.Generator().manual_seed(0))
    assert (masked["obs"] == 16).all()


def test_parameter_groups_exclude_norms_biases_embeddings():
    model = micro_model()
    decay, no_decay = T.parameter_groups(model, 0.1)
    decay_ids = {id(p) for p in decay["params"]}
    assert id(model.obs_embed.weight) not in decay_ids and id(model.norm.weight) not in decay_ids
    assert id(model.policy_head.bias) not in decay_ids and id(model.policy_head.weight) in decay_ids
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_chunked_loss_equals_whole_sequence_loss():
    """Segments with carried state give the same loss as one segment (gradients differ: the state
    is detached between segments); the head gradients of the last segment's outputs agree."""
    results = []
    for segment_len in (8, 24):
        recipe = dataclasses.replace(MICRO.recipe, segment_len=segment_len, obs_mask_prob=0.0)
        model = micro_model()
        loss = T.train_step(model, model, synthetic_batch(1), recipe, torch.Generator(), torch.device("cpu"))["loss"]
        results.append((loss, model.policy_head.bias.grad.clone()))
    (loss_a, head_a), (loss_b, head_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    torch.testing.assert_close(head_a, head_b, rtol=1e-4, atol=1e-6)


def test_training_learns_and_is_deterministic(tmp_path):
    # mostly the policy loss: the synthetic label is learnable, the synthetic observations are random
    recipe = dataclasses.replace(MICRO.recipe, train_steps=30, loss_weights=(0.8, 0.1, 0.1))
    a, b = micro_model(), micro_model()
    result = train(a, recipe, source(), tmp_path / "a")
    train(b, recipe, source(), tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))
    assert result.steps == 30 and result.tokens == 30 * 4 * 24 * a.tokens_per_step
    first, last = result.loss_curve[0][1], result.loss_curve[-1][1]
    assert last < 0.8 * first
    assert (tmp_path / "a" / T.CHECKPOINT_NAME).exists()
    assert result.peak_memory_bytes > 50 * 2**20  # on CPU: the process's peak RSS (torch alone is larger)


def test_resume_after_interrupt_gives_identical_weights(tmp_path):
    recipe = MICRO.recipe  # 6 steps, 3 batches per epoch: the resume crosses an epoch boundary
    full = micro_model()
    train(full, recipe, source(), tmp_path / "full")

    def interrupt(step: int) -> None:
        if step == 3:  # one step after the checkpoint at step 2: the interrupt writes its own
            raise KeyboardInterrupt

    broken = micro_model()
    with pytest.raises(KeyboardInterrupt):
        train(broken, recipe, source(), tmp_path / "resumed", on_step=interrupt)
    resumed = micro_model(seed=5)  # different initial weights: everything must come from the checkpoint
    result = train(resumed, recipe, source(), tmp_path / "resumed", resume=True)
    assert result.steps == 6 and len(result.loss_curve) == 6
    assert all(torch.equal(x, y) for x, y in zip(weights(full), weights(resumed)))


def test_live_log_has_every_step_once_across_a_crash_and_resume(tmp_path):
    """metrics.csv (and TensorBoard, when installed) after a crash one step past the checkpoint and a
    resume: the steps that were trained again appear once, with the numbers of an unbroken run."""
    recipe = MICRO.recipe  # 6 steps, checkpoint every 2
    train(micro_model(), recipe, source(), tmp_path / "full")

    def crash(step: int) -> None:
        if step == 3:  # a crash (not Ctrl-C): no checkpoint is written, the last one is at step 2
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        train(micro_model(), recipe, source(), tmp_path / "resumed", on_step=crash)
    assert [row["step"] for row in read_log(tmp_path / "resumed" / LOG_NAME)] == [1, 2, 3]
    train(micro_model(seed=5), recipe, source(), tmp_path / "resumed", resume=True)
    full, resumed = read_log(tmp_path / "full" / LOG_NAME), read_log(tmp_path / "resumed" / LOG_NAME)
    assert [row["step"] for row in resumed] == [1, 2, 3, 4, 5, 6]
    exact = ("step", "loss", "policy", "obs", "reward", "lr")
    assert [{k: r[k] for k in exact} for r in resumed] == [{k: r[k] for k in exact} for r in full]
    assert resumed[-1]["lr"] == pytest.approx(recipe.lr * T.lr_factor(5, recipe.warmup_steps, recipe.train_steps))
    assert all(r["wall_s"] > 0 and r["tokens_per_s"] > 0 for r in resumed)
    weighted = sum(w * resumed[0][k] for w, k in zip(recipe.loss_weights, ("policy", "obs", "reward")))
    assert weighted == pytest.approx(resumed[0]["loss"], rel=1e-6)
    if tensorboard_available():
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        board = EventAccumulator(str(tmp_path / "resumed" / "tensorboard"))
        board.Reload()
        events = board.Scalars("train/loss")
        assert [e.step for e in events] == [1, 2, 3, 4, 5, 6]
        assert [e.value for e in events] == pytest.approx([r["loss"] for r in full], rel=1e-6)
    # a run started over begins a new log
    train(micro_model(), dataclasses.replace(recipe, train_steps=2), source(), tmp_path / "resumed", restart=True)
    assert [row["step"] for row in read_log(tmp_path / "resumed" / LOG_NAME)] == [1, 2]


class FakeWandb:
    """Stands for the wandb module: records what the log sends."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # what find_spec reads

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        return self

    def log(self, row: dict, step: int) -> None:
        self.calls.append(("log", (step, row)))

    def finish(self) -> None:
        self.calls.append(("finish", None))


def test_wandb_gets_every_row_and_a_stable_run_id(tmp_path, monkeypatch):
    pytest.importorskip("wandb")  # the logs extra, which `make` installs
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    folder = tmp_path / "runs" / "tiny" / "gdn" / "seed0"
    options = RunOptions(progress=False, threads=1, wandb=True)
    T.train(micro_model(), dataclasses.replace(MICRO.recipe, train_steps=3), source(), folder, options)
    (kind, init), *logs, (last, _) = fake.calls
    assert kind == "init" and last == "finish" and init["name"] == "tiny-gdn-seed0" and init["resume"] == "allow"
    rows = read_log(folder / LOG_NAME)
    assert [step for _, (step, _) in logs] == [1, 2, 3]
    assert [row["train/loss"] for _, (_, row) in logs] == pytest.approx([r["loss"] for r in rows])
    again = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", again)
    T.train(micro_model(), MICRO.recipe, source(), folder, dataclasses.replace(options, resume=True))
    assert again.calls[0][1]["id"] == init["id"]  # a resumed run continues the same W&B run


def test_wandb_offline_run_writes_its_file(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    folder = tmp_path / "runs" / "tiny" / "gdn" / "seed0"
    options = RunOptions(progress=False, threads=1, wandb=True)
    T.train(micro_model(), dataclasses.replace(MICRO.recipe, train_steps=2), source(), folder, options)
    assert list(folder.glob("wandb/offline-run-*/run-*.wandb"))


def test_nan_loss_stops_and_names_the_step(tmp_path):
    def batches(epoch, rank, world_size):
        good = [synthetic_batch(i) for i in range(3)]
        bad = synthetic_batch(9)
        bad["reward"][0, 0] = float("nan")
        return good + [bad]

    recipe = dataclasses.replace(MICRO.recipe, train_steps=8)
    with pytest.raises(BenchError, match="at step 4.*last good checkpoint"):
        train(micro_model(), recipe, batches, tmp_path)
    saved = torch.load(tmp_path / T.CHECKPOINT_NAME, weights_only=False)
    assert saved["step"] == 2


def test_empty_source_is_an_error(tmp_path):
    with pytest.raises(BenchError, match="no batch"):
        train(micro_model(), MICRO.recipe, lambda e, r, w: [], tmp_path)


def test_wandb_without_the_package_is_one_line(monkeypatch):
    import bench.train_log as train_log

    monkeypatch.setattr(train_log.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BenchError, match=r"--wandb: the wandb package is not installed \(pip install -e '.\[logs\]'\)"):
        train_log.check_wandb()
