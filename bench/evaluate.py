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


# ---- interactive evaluation -----------------------------------------------------------------------


def task_gaps(tasks: Sequence[Task]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(J_rand, J_opt, keep mask) per task; `keep` is False where the gap is negligible."""
    arrays = TaskArrays.stack(tasks)
    j_rand, j_opt = random_returns(arrays), oracle_returns(arrays)
    return j_rand, j_opt, metrics.scorable(j_rand, j_opt)


def summarize_rollout(
    result: Rollout,
    tasks: Sequence[Task],
    j_rand: np.ndarray,
    j_opt: np.ndarray,
    preset: Preset,
    seed: int,
    groups: Sequence[str] | None = None,
) -> dict:
    """One agent's result entry (`metrics.agent_record`): summaries overall and per group (ns unless
    `groups` labels each task), and the per-task episode record they come from."""
    ep = metrics.episodes(result.rewards, result.dones, result.steps)
    ns = np.array([task.ns for task in tasks])
    k = preset.recipe.few_shot_episodes
    return metrics.agent_record(ep, ns, j_rand, j_opt, k, BOOTSTRAP_SAMPLES, seed, groups)


def interactive_eval(
    model: ICRLModel,
    tasks: Sequence[Task],
    preset: Preset,
    seed: int,
    prompt_id: int,
    tag_id: int,
    device: torch.device | str = "cpu",
    steps: int | None = None,
    log=print,
    groups: Sequence[str] | None = None,
) -> dict:
    """Roll out the model and the oracle, random and TQL-UCB baselines on the same tasks (each
    with the same environment seed) and summarise; the `interactive` record of a result file.
    `groups` labels each task's group (default: its ns)."""
    steps = preset.recipe.eval_steps if steps is None else steps
    j_rand, j_opt, keep = task_gaps(tasks)
    kept = [task for task, k in zip(tasks, keep) if k]
    kept_groups = None if groups is None else [g for g, k in zip(groups, keep) if k]
    if not kept:
        raise BenchError(f"every one of the {len(tasks)} test tasks has a negligible J_opt - J_rand gap")
    j_rand, j_opt = j_rand[keep], j_opt[keep]
    n_obs = max(task.ns for task in kept)
    if len({task.na for task in kept}) != 1:
        raise BenchError(f"tasks of one rollout must share their action count; got {sorted({t.na for t in kept})}")
    na = kept[0].na  # the baselines act in the task's own action space; the model maps by modulo
    agents: dict[str, SteppingAgent] = {
        "model": model,
        "oracle": OracleAgent(kept),
        "random": RandomAgent(na),
        "tql_ucb": TQLUCBAgent(len(kept), n_obs, na, seed),
    }
    out: dict[str, dict] = {}
    model.eval()
    for name, agent in agents.items():
        result = rollout(agent, kept, steps, seed, preset.recipe.temperature, prompt_id, tag_id, device)
        out[name] = summarize_rollout(result, kept, j_rand, j_opt, preset, seed, kept_groups)
        overall = out[name]["overall"]
        log(
            f"  {name:8s} d first quarter {overall['first_quarter']:.3f}  last quarter {overall['last_quarter']:.3f}"
            f"  diff {overall['quarter_diff']:+.3f} "
            f"CI [{overall['quarter_diff_ci'][0]:+.3f}, {overall['quarter_diff_ci'][1]:+.3f}]"
        )
    return {
        "eval_steps": steps,
        "n_tasks": len(kept),
        "skipped_tasks": len(tasks) - len(kept),
        "gap_threshold": metrics.GAP_THRESHOLD,
        "bootstrap_samples": BOOTSTRAP_SAMPLES,
        "smoothing_window": int(metrics.SMOOTHING_POINTS * metrics.curve_edges(steps)[1]),
        "agents": out,
    }


def grouped_eval(
    model: ICRLModel,
    suite: Suite,
    preset: Preset,
    seed: int,
    prompt_id: int,
    tag_id: int,
    device: torch.device | str = "cpu",
    steps: int | None = None,
    log=print,
) -> dict:
    """`interactive_eval` of each group of a suite on its own (the OOD suite: a group is one task,
    whose instances share their action count), and the suite's tasks not applicable at `preset`."""
    records = {}
    for name in dict.fromkeys(suite.groups):
        members = [task for task, group in zip(suite.tasks, suite.groups) if group == name]
        log(f"  [{name}] {len(members)} instances")
        records[name] = interactive_eval(
            model, members, preset, seed, prompt_id, tag_id, device, steps, log, groups=[name] * len(members)
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
