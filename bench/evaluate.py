"""Evaluation: offline losses by context position on held-out sequences, and interactive ICRL
scores of the model and the baselines on the test tasks (rollouts from `bench.rollout`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from bench import metrics
from bench.anymdp.solvers import TaskArrays, oracle_returns, random_returns
from bench.anymdp.task import Task
from bench.errors import BenchError
from bench.model import ICRLModel
from bench.presets import Preset
from bench.recipe import prepare_batch, segments, step_losses
from bench.rollout import OracleAgent, RandomAgent, Rollout, SteppingAgent, TQLUCBAgent, rollout
from bench.suites import Suite

BOOTSTRAP_SAMPLES = 2000
EVAL_ROLLOUTS = 8
"""Independent rollouts of every agent on every task; scores are their means (less noise, issue 19)."""
ROLLOUT_SEED = 2_025
"""Seed of every evaluation rollout, the same for every run, architecture and training seed: rollout
noise is not confounded with the training seed, and all agents meet the same environment draws."""


# ---- interactive evaluation -----------------------------------------------------------------------


def task_gaps(tasks: Sequence[Task]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(J_rand, J_opt, keep mask) per task; `keep` is False where the gap is negligible."""
    arrays = TaskArrays.stack(tasks)
    j_rand, j_opt = random_returns(arrays), oracle_returns(arrays)
    return j_rand, j_opt, metrics.scorable(j_rand, j_opt)


def score_rollout(
    result: Rollout, tasks: Sequence[Task], j_rand: np.ndarray, j_opt: np.ndarray, few_shot_episodes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(R, N, K) anchored normalised scores and (R, N) normalised few-shot scores of a rollout of R
    rollouts of the N `tasks` (rows rollout-major)."""
    n = len(tasks)
    anchors = metrics.anchor_steps(result.steps)
    rows_rand, rows_opt = np.tile(j_rand, result.rewards.shape[0] // n), np.tile(j_opt, result.rewards.shape[0] // n)
    curves = metrics.normalized(metrics.anchored_returns(result.rewards, result.dones, anchors), rows_rand, rows_opt)
    few = metrics.first_episodes_return(result.rewards, result.dones, few_shot_episodes)
    few = metrics.normalized(few, rows_rand, rows_opt)
    return curves.reshape(-1, n, anchors.size), few.reshape(-1, n)


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"


def score_line(summary: dict) -> str:
    """One line of a Summary: final and gain with their intervals, the first quarter."""
    lo, hi = summary["final_ci"]
    glo, ghi = summary["gain_ci"]
    return (
        f"final {_signed(summary['final'])} [{_signed(lo)}, {_signed(hi)}]  first quarter {_signed(summary['first'])}"
        f"  gain {_signed(summary['gain'])} [{_signed(glo)}, {_signed(ghi)}]"
    )


def interactive_eval(
    model: ICRLModel,
    tasks: Sequence[Task],
    preset: Preset,
    prompt_id: int,
    tag_id: int,
    device: torch.device | str = "cpu",
    steps: int | None = None,
    log=print,
    groups: Sequence[str] | None = None,
    rollouts: int = EVAL_ROLLOUTS,
) -> dict:
    """Roll out the model and the oracle, random and TQL-UCB baselines `rollouts` times on the same
    tasks (all seeded by ROLLOUT_SEED) and summarise; the `interactive` record of a result file.
    `groups` labels each task's group (default: its ns)."""
    steps = preset.recipe.eval_steps if steps is None else steps
    if rollouts < 1:
        raise BenchError(f"rollouts={rollouts}; accepted: a positive integer")
    j_rand, j_opt, keep = task_gaps(tasks)
    kept = [task for task, k in zip(tasks, keep) if k]
    if not kept:
        raise BenchError(f"every one of the {len(tasks)} test tasks has a negligible J_opt - J_rand gap")
    labels = [f"ns={t.ns}" for t in tasks] if groups is None else list(groups)
    labels = [g for g, k in zip(labels, keep) if k]
    j_rand, j_opt = j_rand[keep], j_opt[keep]
    n_obs = max(task.ns for task in kept)
    if len({task.na for task in kept}) != 1:
        raise BenchError(f"tasks of one rollout must share their action count; got {sorted({t.na for t in kept})}")
    na = kept[0].na  # the baselines act in the task's own action space; the model maps by modulo
    rows = list(kept) * rollouts
    agents: dict[str, SteppingAgent] = {
        "model": model,
        "oracle": OracleAgent(rows),
        "random": RandomAgent(na),
        "tql_ucb": TQLUCBAgent(len(rows), n_obs, na, ROLLOUT_SEED),
    }
    anchors = metrics.anchor_steps(steps)
    ns = np.array([task.ns for task in kept])
    out: dict[str, dict] = {}
    noise: dict[str, list] = {}
    model.eval()
    for name, agent in agents.items():
        result = rollout(agent, rows, steps, ROLLOUT_SEED, preset.recipe.temperature, prompt_id, tag_id, device)
        curves, few = score_rollout(result, kept, j_rand, j_opt, preset.recipe.few_shot_episodes)
        out[name] = metrics.agent_record(
            metrics.nanmean(curves, axis=0),
            metrics.nanmean(few, axis=0),
            ns,
            labels,
            j_rand,
            j_opt,
            steps,
            BOOTSTRAP_SAMPLES,
            metrics.BOOTSTRAP_SEED,
        )
        noise[name] = metrics.rollout_noise(curves, labels, anchors, steps)
        log(f"  {name:8s} {score_line(out[name]['overall'])}")
    return {
        "eval_steps": steps,
        "n_tasks": len(kept),
        "skipped_tasks": len(tasks) - len(kept),
        "gap_threshold": metrics.GAP_THRESHOLD,
        "bootstrap_samples": BOOTSTRAP_SAMPLES,
        "rollouts": rollouts,
        "rollout_seed": ROLLOUT_SEED,
        "rollout_noise": noise,
        "agents": out,
    }


def grouped_eval(
    model: ICRLModel,
    suite: Suite,
    preset: Preset,
    prompt_id: int,
    tag_id: int,
    device: torch.device | str = "cpu",
    steps: int | None = None,
    log=print,
    rollouts: int = EVAL_ROLLOUTS,
) -> dict:
    """`interactive_eval` of each group of a suite on its own (the OOD suite: a group is one task,
    whose instances share their action count), and the suite's tasks not applicable at `preset`."""
    records = {}
    for name in dict.fromkeys(suite.groups):
        members = [task for task, group in zip(suite.tasks, suite.groups) if group == name]
        log(f"  [{name}] {len(members)} instances")
        records[name] = interactive_eval(
            model, members, preset, prompt_id, tag_id, device, steps, log, [name] * len(members), rollouts
        )
    return {"by_task": records, "not_applicable": dict(suite.not_applicable)}


# ---- offline evaluation -------------------------------------------------------------------------


def bin_edges(length: int, first: int = 16) -> list[int]:
    """Context-position bins: [0, first), then doubling ([16, 32), [32, 64), ...), the last ending at `length`."""
    edges = [0]
    edge = first
    while edge < length:
        edges.append(edge)
        edge *= 2
    return edges + [length]


@torch.no_grad()
def offline_eval(
    model: ICRLModel, batches: Iterable[dict[str, torch.Tensor]], segment_len: int, device: torch.device | str = "cpu"
) -> dict:
    """Losses of the model on held-out sequences by context position: the `offline` record."""
    model.eval()
    device = torch.device(device)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    n_sequences = 0
    length = None
    no_mask = torch.Generator().manual_seed(0)  # unused draws: mask probability 0
    for batch in batches:
        prepared = {k: v.to(device) for k, v in prepare_batch(batch, model.mask_id, 0.0, no_mask).items()}
        n, length = prepared["obs"].shape
        n_sequences += n
        state = None
        per_step = {
            key: torch.zeros(n, length, device=device) for key in ("action_ce", "action_acc", "obs_ce", "reward_mse")
        }
        for start, segment in segments(prepared, segment_len):
            out, state = model(segment, state)
            span = slice(start, start + segment["obs"].shape[1])
            losses = step_losses(out, segment)
            per_step["action_ce"][:, span] = losses["policy"]
            per_step["action_acc"][:, span] = (out["policy_logits"].float().argmax(-1) == segment["label"]).float()
            per_step["obs_ce"][:, span] = losses["obs"]
            per_step["reward_mse"][:, span] = losses["reward"]
        valid = {key: torch.ones(n, length, device=device) for key in per_step}
        valid["obs_ce"] = prepared["next_valid"].float()
        for key, values in per_step.items():
            sums[key] = sums.get(key, 0) + (values * valid[key]).sum(0)
            counts[key] = counts.get(key, 0) + valid[key].sum(0)
    if length is None:
        raise BenchError("offline_eval: the validation batches are empty")
    edges = bin_edges(length)
    record: dict[str, Any] = {"bin_edges": edges, "n_sequences": n_sequences, "overall": {}}
    for key in sums:
        s, c = sums[key].cpu(), counts[key].cpu()
        record[key] = [float(s[a:b].sum() / c[a:b].sum().clamp(min=1)) for a, b in zip(edges[:-1], edges[1:])]
        record["overall"][key] = float(s.sum() / c.sum().clamp(min=1))
    return record
