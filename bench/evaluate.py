"""Evaluation: offline losses by context position, and interactive ICRL rollouts.

Rollouts are batched over tasks and stepped one environment step at a time through a stepping
API that the model and the baseline stand-ins share (`SteppingAgent`): the agent returns action
logits for the current observation, the rollout samples an action at the scheduled temperature,
feeds it back, and steps the environment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from bench import metrics
from bench.anymdp import portable as pt
from bench.anymdp.batched import BatchedEnv
from bench.anymdp.solvers import TaskArrays, backward_induction, oracle_returns, random_returns
from bench.anymdp.task import Task
from bench.anymdp.tql_ucb import TQLUCB
from bench.errors import BenchError
from bench.model import ICRLModel
from bench.presets import Preset
from bench.recipe import prepare_batch, segments, step_losses

GAP_THRESHOLD = 0.01
"""A test task is skipped when J_opt - J_rand < GAP_THRESHOLD * max(1, |J_opt|): its normalised
score would mostly measure reward noise."""
CERTAIN_LOGIT = 1e4
"""Logit margin of a stand-in's chosen action: sampled with certainty at any temperature >= 0.01."""
BOOTSTRAP_SAMPLES = 2000
SAMPLING_STREAM = 1
"""Action sampling draws from Generator([seed, SAMPLING_STREAM]); the environment from BatchedEnv(seed)."""


class SteppingAgent(Protocol):
    """What a rollout needs from an agent (ICRLModel implements it)."""

    def start_state(self, batch_size: int, device: torch.device | str = "cpu") -> Any: ...

    def policy_logits_step(
        self, obs: torch.Tensor, prompt: torch.Tensor, tag: torch.Tensor, prev_reward: torch.Tensor, first: torch.Tensor, state: Any
    ) -> tuple[torch.Tensor, Any]: ...

    def feed_action(self, action: torch.Tensor, state: Any) -> Any: ...


def temperature_at(step: int, schedule: tuple[float, float, int]) -> float:
    """Linear decay from schedule[0] to schedule[1] over schedule[2] steps, then constant."""
    start, end, steps = schedule
    if steps <= 0:
        return end
    return start + (end - start) * min(step, steps) / steps


def sample_actions(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """One action per row of `logits` (B, na) from softmax(logits / temperature)."""
    scaled = logits / temperature
    probs = pt.exp(scaled - scaled.max(axis=1, keepdims=True))
    cumulative = np.cumsum(probs, axis=1)
    u = rng.random(len(logits))[:, None] * cumulative[:, -1:]
    return np.minimum((cumulative <= u).sum(axis=1), logits.shape[1] - 1)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Temporarily use `n` torch intra-op threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Rollout:
    rewards: np.ndarray
    """(N, T) reward of each step, T >= steps (the tail finishes episodes started before `steps`)."""
    dones: np.ndarray
    """(N, T) bool: the episode ended after the step (terminated or truncated)."""
    actions: np.ndarray
    """(N, T) actions taken."""
    steps: int
    """Scored steps: episodes starting at or after this step are not scored."""


def rollout(
    agent: SteppingAgent,
    tasks: Sequence[Task],
    steps: int,
    seed: int,
    temperature: tuple[float, float, int],
    prompt_id: int,
    tag_id: int,
    device: torch.device | str = "cpu",
) -> Rollout:
    """Run `agent` for `steps` environment steps on every task at once (auto-reset between episodes),
    then on until every task has finished the episode in progress at `steps` (so that every scored
    episode is complete; at most a horizon more). The agent acts the same way in that tail.

    The environment and the action sampling are seeded by `seed`. An agent may define
    `record_transition(obs, action, reward, next_obs, terminated)` (NumPy arrays) to learn from
    each transition (TQL-UCB does); the model learns only through its state."""
    if steps < 1:
        raise BenchError(f"rollout steps={steps}; accepted: a positive integer")
    n = len(tasks)
    env = BatchedEnv(tasks, seed)
    sampler = np.random.default_rng([seed, SAMPLING_STREAM])
    limit = steps + int(env.horizon.max())
    rewards = np.zeros((n, limit))
    dones = np.zeros((n, limit), dtype=bool)
    actions = np.zeros((n, limit), dtype=np.int64)
    open_at_end = np.ones(n, dtype=bool)  # the episode in progress at `steps` has not ended yet
    obs = env.reset()
    prev_reward = np.zeros(n)
    first = np.ones(n, dtype=bool)
    prompt = torch.full((n,), prompt_id, dtype=torch.long, device=device)
    tag = torch.full((n,), tag_id, dtype=torch.long, device=device)
    state = agent.start_state(n, device)
    record = getattr(agent, "record_transition", None)
    threads = 1 if torch.device(device).type == "cpu" else torch.get_num_threads()
    with torch_threads(threads):  # one thread: tiny per-step work, see the facts on CPU stepping
        t = 0
        while t < steps or open_at_end.any():
            logits, state = agent.policy_logits_step(
                torch.as_tensor(obs, device=device),
                prompt,
                tag,
                torch.as_tensor(prev_reward, dtype=torch.float32, device=device),
                torch.as_tensor(first, device=device),
                state,
            )
            action_np = sample_actions(logits.float().cpu().numpy(), temperature_at(t, temperature), sampler)
            state = agent.feed_action(torch.as_tensor(action_np, device=device), state)
            next_obs, reward, terminated, truncated = env.step(action_np)
            if record is not None:
                record(obs, action_np, reward, env.next_obs, terminated)
            done = terminated | truncated
            rewards[:, t], dones[:, t], actions[:, t] = reward, done, action_np
            obs, prev_reward, first = next_obs, reward, done
            if t >= steps - 1:
                open_at_end &= ~done
            t += 1
    return Rollout(rewards[:, :t], dones[:, :t], actions[:, :t], steps)


# ---- baseline stand-ins sharing the stepping API ------------------------------------------------


def _certain(actions: np.ndarray, na: int) -> torch.Tensor:
    return torch.as_tensor(np.eye(na)[actions] * CERTAIN_LOGIT, dtype=torch.float32)


class RandomAgent:
    """Uniform-random actions (equal logits)."""

    def __init__(self, na: int) -> None:
        self.na = na

    def start_state(self, batch_size: int, device: torch.device | str = "cpu") -> None:
        return None

    def policy_logits_step(self, obs, prompt, tag, prev_reward, first, state):
        return torch.zeros(obs.shape[0], self.na), state

    def feed_action(self, action, state):
        return state


class OracleAgent:
    """The finite-horizon optimal (time-dependent) policy, given the true tables. It tracks the
    step within the episode from the `first` flags and maps observations back to inner states."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        arrays = TaskArrays.stack(tasks)
        self.greedy = backward_induction(arrays).argmax(axis=-1)  # (N, H, ns)
        self.horizon = arrays.horizon
        self.na = arrays.na
        inverse = np.zeros((len(tasks), arrays.ns), dtype=np.int64)
        for i, task in enumerate(tasks):
            inverse[i, task.permutation] = np.arange(task.ns)
        self.inner = inverse

    def start_state(self, batch_size: int, device: torch.device | str = "cpu") -> np.ndarray:
        return np.zeros(batch_size, dtype=np.int64)  # steps taken in the current episode

    def policy_logits_step(self, obs, prompt, tag, prev_reward, first, state):
        episode_step = np.where(first.cpu().numpy(), 0, state)
        index = np.arange(len(episode_step))
        steps_to_go = np.maximum(self.horizon - episode_step, 1)
        states = self.inner[index, obs.cpu().numpy()]
        actions = self.greedy[index, steps_to_go - 1, states]
        return _certain(actions, self.na), episode_step

    def feed_action(self, action, state):
        return state + 1


class TQLUCBAgent:
    """Tabular Q-learning with a UCB bonus on observation ids (bench.anymdp.tql_ucb)."""

    def __init__(self, n_tasks: int, n_obs: int, na: int, seed: int) -> None:
        self.learner = TQLUCB(n_tasks, n_obs, na)
        self.rng = np.random.default_rng(seed)
        self.na = na

    def start_state(self, batch_size: int, device: torch.device | str = "cpu") -> None:
        return None

    def policy_logits_step(self, obs, prompt, tag, prev_reward, first, state):
        return _certain(self.learner.act(obs.cpu().numpy(), self.rng), self.na), state

    def feed_action(self, action, state):
        return state

    def record_transition(self, obs, action, reward, next_obs, terminated) -> None:
        self.learner.update(obs, action, reward, next_obs, terminated)


# ---- interactive evaluation -----------------------------------------------------------------------


def task_gaps(tasks: Sequence[Task]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(J_rand, J_opt, keep mask) per task; `keep` is False where the gap is negligible."""
    arrays = TaskArrays.stack(tasks)
    j_rand, j_opt = random_returns(arrays), oracle_returns(arrays)
    keep = (j_opt - j_rand) >= GAP_THRESHOLD * np.maximum(1.0, np.abs(j_opt))
    return j_rand, j_opt, keep


def summarize_rollout(
    result: Rollout, tasks: Sequence[Task], j_rand: np.ndarray, j_opt: np.ndarray, preset: Preset, seed: int
) -> dict:
    """One agent's result entry (`metrics.agent_record`): summaries overall and per ns group, and
    the per-task episode record they come from."""
    ep = metrics.episodes(result.rewards, result.dones, result.steps)
    ns = np.array([task.ns for task in tasks])
    return metrics.agent_record(ep, ns, j_rand, j_opt, preset.recipe.few_shot_episodes, BOOTSTRAP_SAMPLES, seed)


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
) -> dict:
    """Roll out the model and the oracle, random and TQL-UCB baselines on the same tasks (each
    with the same environment seed) and summarise; the `interactive` record of a result file."""
    steps = preset.recipe.eval_steps if steps is None else steps
    j_rand, j_opt, keep = task_gaps(tasks)
    kept = [task for task, k in zip(tasks, keep) if k]
    if not kept:
        raise BenchError(f"every one of the {len(tasks)} test tasks has a negligible J_opt - J_rand gap")
    j_rand, j_opt = j_rand[keep], j_opt[keep]
    n_obs = max(task.ns for task in kept)
    na = preset.data.na
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
        out[name] = summarize_rollout(result, kept, j_rand, j_opt, preset, seed)
        overall = out[name]["overall"]
        log(
            f"  {name:8s} d first quarter {overall['first_quarter']:.3f}  last quarter {overall['last_quarter']:.3f}"
            f"  diff {overall['quarter_diff']:+.3f} CI [{overall['quarter_diff_ci'][0]:+.3f}, {overall['quarter_diff_ci'][1]:+.3f}]"
        )
    return {
        "eval_steps": steps,
        "n_tasks": len(kept),
        "skipped_tasks": len(tasks) - len(kept),
        "gap_threshold": GAP_THRESHOLD,
        "bootstrap_samples": BOOTSTRAP_SAMPLES,
        "smoothing_window": int(metrics.SMOOTHING_POINTS * metrics.curve_edges(steps)[1]),
        "agents": out,
    }


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
        per_step = {key: torch.zeros(n, length, device=device) for key in ("action_ce", "action_acc", "obs_ce", "reward_mse")}
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
