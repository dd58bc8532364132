"""Result files made from synthetic rollouts, so that every summary recomputes exactly from them."""

from __future__ import annotations

import numpy as np

from architectures import REGISTRY, resolve
from bench import metrics
from bench.data.shards import committed_fingerprint
from bench.presets import PRESETS
from bench.provenance import backbone_source
from bench.report import results

PRESET = "tiny"
N_TASKS_PER_NS = 6
EVAL_STEPS = 400


def synthetic_rollout(skill: float, seed: int, episode_len: int) -> tuple[np.ndarray, ...]:
    """(rewards, dones, ns, j_rand, j_opt) for 2 ns groups of fixed tasks (the same in every call):
    the normalised return of episode e is about `skill * (1 - exp(-e / 3))`, plus noise drawn from
    `seed`, so the agent 'learns in context'."""
    tasks = np.random.default_rng(episode_len)
    ns = np.repeat([8, 16], N_TASKS_PER_NS)
    n_tasks = ns.size
    j_rand = tasks.normal(0.0, 0.5, n_tasks)
    j_opt = j_rand + tasks.uniform(1.0, 3.0, n_tasks)
    rng = np.random.default_rng(seed)
    recorded = EVAL_STEPS + 2 * episode_len + 6  # every anchored episode ends in the record
    rewards = np.zeros((n_tasks, recorded))
    dones = np.zeros((n_tasks, recorded), dtype=bool)
    for i in range(n_tasks):
        length = episode_len + int(rng.integers(-3, 4))
        ends = np.arange(length - 1, recorded, length)
        level = skill * (1 - np.exp(-np.arange(ends.size) / 3)) + rng.normal(0, 0.05, ends.size)
        dones[i, ends] = True
        rewards[i, ends] = j_rand[i] + level * (j_opt[i] - j_rand[i])
    return rewards, dones, ns, j_rand, j_opt


def agent_entry(skill: float, seed: int, episode_len: int, label: str | None = None) -> dict:
    """One agent's record (`metrics.agent_record`) of a synthetic rollout; groups by ns unless `label`."""
    rewards, dones, ns, j_rand, j_opt = synthetic_rollout(skill, seed, episode_len)
    anchors = metrics.anchor_steps(EVAL_STEPS)
    curves = metrics.normalized(metrics.anchored_returns(rewards, dones, anchors), j_rand, j_opt)
    few = metrics.normalized(metrics.first_episodes_return(rewards, dones, 3), j_rand, j_opt)
    groups = [label or f"ns={n}" for n in ns]
    return metrics.agent_record(curves, few, ns, groups, j_rand, j_opt, EVAL_STEPS, 200, metrics.BOOTSTRAP_SEED)


def make_result(arch: str, seed: int, skill: float) -> dict:
    """A valid result document of `PRESET` whose model agent has the given skill; the baselines
    are the same in every document (one rollout seed for all runs, as `bench run` does)."""
    doc = results.example_result(PRESET, arch, seed)
    doc["manifest"]["preset_digest"] = PRESETS[PRESET].digest()
    doc["manifest"]["dataset_fingerprint"] = committed_fingerprint(PRESETS[PRESET]) or "0" * 64
    doc["manifest"]["arch_class"] = REGISTRY.get(arch, REGISTRY["gdn"])  # a real class: its source is checked
    doc["manifest"]["backbone_source"] = backbone_source(resolve(doc["manifest"]["arch_class"]))
    skills = {"model": skill, "oracle": 1.0, "random": 0.0, "tql_ucb": 0.4}
    noise = {name: 1000 * (seed + 1) + sum(map(ord, arch)) if name == "model" else i for i, name in enumerate(skills)}
    interactive = doc["interactive"]
    interactive.update(eval_steps=EVAL_STEPS, n_tasks=2 * N_TASKS_PER_NS, bootstrap_samples=200)
    interactive["agents"] = {name: agent_entry(level, noise[name], 20) for name, level in skills.items()}
    lake = {**interactive, "agents": {}}  # one OOD task, scored like the test tasks
    for name, level in skills.items():
        lake["agents"][name] = agent_entry(level, noise[name] + 10, 12, "frozenlake-4x4")
    doc["ood"] = {"by_task": {"frozenlake-4x4": lake}, "not_applicable": {"cliffwalking": "49 states"}}
    return doc
