"""Interactive rollouts: agents that share one stepping API, and the loop that steps them.

An agent returns action logits for the current observation (`SteppingAgent`); the rollout samples
an action at the scheduled temperature, feeds it back, and steps every task's environment at once.
The model (`ICRLModel`) and the baselines (oracle, uniform random, TQL-UCB) are all agents, so one
loop serves all. Under torchrun, `shard_agent` splits the model's work over ranks by task.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from bench import distributed, metrics
from bench.anymdp import portable as pt
from bench.anymdp.batched import BatchedEnv
from bench.anymdp.solvers import TaskArrays, backward_induction
from bench.anymdp.task import Task
from bench.anymdp.tql_ucb import TQLUCB
from bench.errors import BenchError

CERTAIN_LOGIT = 1e4
"""Logit margin of a stand-in's chosen action: sampled with certainty at any temperature >= 0.01."""
SAMPLING_STREAM = 1
"""Action sampling draws from Generator([seed, SAMPLING_STREAM]); the environment from BatchedEnv(seed)."""


class SteppingAgent(Protocol):
    """What a rollout needs from an agent (ICRLModel implements it)."""

    def start_state(self, batch_size: int, device: torch.device | str = "cpu") -> Any: ...

    def policy_logits_step(
        self,
        obs: torch.Tensor,
        prompt: torch.Tensor,
        tag: torch.Tensor,
        prev_reward: torch.Tensor,
        first: torch.Tensor,
        state: Any,
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
    """(N, T) reward of each step, T >= steps (the tail finishes the episodes anchored before `steps`)."""
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
    then on until every task has finished the first episode that started at or after the last
    anchor of `metrics.anchor_steps(steps)` (so that every anchored episode is complete; at most two
    horizons more). The agent acts the same way in that tail.

    An agent with more actions than the tasks (a 5-action model on a 4-action task) has its
    action a applied as `a % na` (OmniRL's rule, docs/ood.md); the agent itself is fed a. The
    environment and the action sampling are seeded by `seed`. An agent may define
    `record_transition(obs, action, reward, next_obs, terminated)` (NumPy arrays) to learn from
    each transition (TQL-UCB does); the model learns only through its state."""
    if steps < 1:
        raise BenchError(f"rollout steps={steps}; accepted: a positive integer")
    n = len(tasks)
    env = BatchedEnv(tasks, seed)
    sampler = np.random.default_rng([seed, SAMPLING_STREAM])
    limit = steps + 2 * int(env.horizon.max())  # the anchored episode may start after `steps`
    rewards = np.zeros((n, limit))
    dones = np.zeros((n, limit), dtype=bool)
    actions = np.zeros((n, limit), dtype=np.int64)
    last_anchor = int(metrics.anchor_steps(steps)[-1])
    pending = np.ones(n, dtype=bool)  # the episode anchored at the last anchor has not ended yet
    anchored = np.zeros(n, dtype=bool)  # the episode in progress is that one
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
        while t < steps or pending.any():
            if t >= last_anchor:
                anchored |= first & pending
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
            action_np = action_np % env.na  # an agent with more actions than the task: OmniRL's modulo rule
            next_obs, reward, terminated, truncated = env.step(action_np)
            if record is not None:
                record(obs, action_np, reward, env.next_obs, terminated)
            done = terminated | truncated
            rewards[:, t], dones[:, t], actions[:, t] = reward, done, action_np
            obs, prev_reward, first = next_obs, reward, done
            pending &= ~(anchored & done)
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


# ---- the model's work split over ranks ------------------------------------------------------------


def task_slice(n_tasks: int, rank: int, world_size: int) -> slice:
    """Rank `rank`'s contiguous block of `n_tasks` (blocks of ceil(n / world); the last may be short or empty)."""
    per_rank = -(-n_tasks // world_size)
    return slice(min(rank * per_rank, n_tasks), min((rank + 1) * per_rank, n_tasks))


class RankShardedAgent:
    """A stepping agent that runs `agent` on this rank's block of tasks only.

    Each step every rank computes the logits of its block and all ranks gather the logits of
    every task, so the rollout (environment, action sampling, metrics) proceeds on all ranks
    exactly as in one process; only the model's work is split."""

    def __init__(self, agent: Any, na: int) -> None:
        self.agent = agent
        self.na = na
        self.rank, self.world_size = distributed.dist_info()
        self.block = slice(0, 0)
        self.n_tasks = 0

    def eval(self) -> RankShardedAgent:
        self.agent.eval()
        return self

    def start_state(self, batch_size: int, device: torch.device | str = "cpu") -> Any:
        self.n_tasks = batch_size
        self.block = task_slice(batch_size, self.rank, self.world_size)
        size = self.block.stop - self.block.start
        return self.agent.start_state(size, device) if size else None

    def policy_logits_step(self, obs, prompt, tag, prev_reward, first, state):
        b = self.block
        padded = torch.zeros(-(-self.n_tasks // self.world_size), self.na, device=obs.device)
        if b.stop > b.start:
            logits, state = self.agent.policy_logits_step(obs[b], prompt[b], tag[b], prev_reward[b], first[b], state)
            padded[: b.stop - b.start] = logits.float()
        return torch.cat(distributed.all_gather_tensors(padded, "the rollout"))[: self.n_tasks], state

    def feed_action(self, action: torch.Tensor, state: Any) -> Any:
        b = self.block
        return self.agent.feed_action(action[b], state) if b.stop > b.start else state


def shard_agent(agent: Any, na: int) -> Any:
    """`agent` itself in one process; a RankShardedAgent over it (`na` actions) under torchrun."""
    return agent if distributed.dist_info()[1] == 1 else RankShardedAgent(agent, na)
