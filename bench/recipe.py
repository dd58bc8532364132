"""What training and evaluation share: the token layout, the per-sequence inputs and targets, the
cut into segments, and the loss terms (docs/recipe.md).

    batch (B, T) --prepare_batch--> inputs + targets --segments--> (B, L) slices
    model(slice) -> head outputs --step_losses--> (B, L) policy CE, next-obs CE, reward SE

Training weights and sums the per-step terms (`weighted_sums`); offline evaluation averages them by
context position. Both therefore score exactly the same quantities.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.errors import BenchError

LOSS_TERMS = ("policy", "obs", "reward")
"""The loss terms, in the order of `RecipeSpec.loss_weights`."""
RAMP_FLOOR = 0.01
"""Loss weight of the first context position under the position ramp ("near 0")."""


@dataclass(frozen=True)
class Layout:
    """How one environment step becomes tokens, and where each head reads.

    Each slot is a token: the sum of the embeddings of its fields plus the slot's own embedding.
    Fields: obs (with the episode-start flag), prompt, tag, action, reward (of this step),
    prev_reward and prev_action (of the step before; none at a sequence start). The policy head
    reads the token before the action slot. In a rollout, the slots before the action are fed once
    the observation is known, the action slot once the action is chosen, and the slots after it
    (the reward) at the next step. A layout without an action slot feeds the action with the next
    step's token (`prev_action`); its world-model heads are action-conditioned: they read the
    step's own token and select their prediction by the action taken."""

    name: str
    """The name presets use (`RecipeSpec.layout`)."""
    slots: tuple[tuple[str, ...], ...]
    """Fields summed into each token, in time order."""
    reward_read: int
    """Slot whose output the reward head reads."""
    next_obs_read: int
    """Slot whose output the next-observation head reads."""

    @property
    def tokens_per_step(self) -> int:
        return len(self.slots)

    @property
    def action_slot(self) -> int | None:
        """The slot of the action token; None when the action enters with the next step's token."""
        return self.slots.index(("action",)) if ("action",) in self.slots else None

    @property
    def action_conditioned(self) -> bool:
        """The world-model heads select their prediction by the action taken (no action slot)."""
        return self.action_slot is None

    @property
    def policy_read(self) -> int:
        """The token just before the action (the last one of a step without an action slot): the
        policy must not see the action it predicts."""
        return self.tokens_per_step - 1 if self.action_slot is None else self.action_slot - 1


LAYOUTS: dict[str, Layout] = {
    "paper": Layout(
        "paper", (("obs",), ("prompt",), ("tag",), ("action",), ("reward",)), reward_read=3, next_obs_read=4
    ),
    "grouped": Layout(
        "grouped", (("obs", "prompt", "tag", "prev_reward"), ("action",)), reward_read=1, next_obs_read=1
    ),
    "single": Layout(
        "single", (("obs", "prompt", "tag", "prev_action", "prev_reward"),), reward_read=0, next_obs_read=0
    ),
}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise BenchError(f"unknown layout {name!r}; choose from: {', '.join(LAYOUTS)}") from None


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log(1 + |x|): rewards enter the model and the reward loss on this scale, since
    AnyMDP rewards span about -35 to 100 with most within +-2 (docs/recipe.md)."""
    return torch.sign(x) * torch.log1p(x.abs())


def prepare_batch(
    batch: dict[str, torch.Tensor],
    mask_id: int,
    mask_prob: float,
    generator: torch.Generator,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, torch.Tensor]:
    """Whole-sequence inputs and targets, computed before cutting into segments: prev_reward,
    prev_action (-1 at the sequence start), first (episode start), the (masked) obs inputs, the
    next-obs target and its validity (not across an episode end or past the sequence). `shard` = (rank, world_size):
    the mask of the whole global batch is drawn and this rank's rows kept (same masks at any world size)."""
    obs, reward, done = batch["obs"].long(), batch["reward"].float(), batch["done"].bool()
    n, length = obs.shape
    prev_reward = torch.zeros_like(reward)
    prev_reward[:, 1:] = reward[:, :-1]
    prev_action = torch.full_like(obs, -1)
    prev_action[:, 1:] = batch["action"][:, :-1]
    first = torch.ones_like(done)
    first[:, 1:] = done[:, :-1]
    next_obs = torch.zeros_like(obs)
    next_obs[:, :-1] = obs[:, 1:]
    next_valid = ~done
    next_valid[:, -1] = False
    masked = torch.rand(n * shard[1], length, generator=generator)[shard[0] * n : (shard[0] + 1) * n] < mask_prob
    return {
        "obs": torch.where(masked, torch.full_like(obs, mask_id), obs),
        "prompt": batch["prompt"].long(),
        "tag": batch["tag"].long(),
        "action": batch["action"].long(),
        "label": batch["label"].long(),
        "reward": reward,
        "prev_reward": prev_reward,
        "prev_action": prev_action,
        "first": first,
        "next_obs": next_obs,
        "next_valid": next_valid,
    }


def segments(prepared: dict[str, torch.Tensor], segment_len: int) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """(start, slice) pairs of consecutive `segment_len`-step slices of (B, T) fields (the last may
    be shorter); per-sequence (B,) fields are passed along whole."""
    if not isinstance(segment_len, int) or segment_len < 1:
        raise BenchError(f"segment_len must be a positive int; got {segment_len!r}")
    length = prepared["obs"].shape[1]
    for start in range(0, length, segment_len):
        yield start, {k: v if v.dim() == 1 else v[:, start : start + segment_len] for k, v in prepared.items()}


def position_weights(length: int, ramp_steps: int) -> torch.Tensor:
    """(length,) loss weight per context position: linear from RAMP_FLOOR to 1 over `ramp_steps`."""
    positions = torch.arange(length, dtype=torch.float32)
    if ramp_steps <= 0:
        return torch.ones(length)
    return (RAMP_FLOOR + (1 - RAMP_FLOOR) * positions / ramp_steps).clamp(max=1.0)


def step_losses(outputs: dict[str, torch.Tensor], segment: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """(B, L) loss terms of every step: policy cross-entropy against the label action,
    next-observation cross-entropy (meaningful where `next_valid`), reward squared error on the
    symlog scale."""
    shape = segment["label"].shape
    policy = F.cross_entropy(
        outputs["policy_logits"].float().flatten(0, 1), segment["label"].flatten(), reduction="none"
    )
    obs = F.cross_entropy(outputs["obs_logits"].float().flatten(0, 1), segment["next_obs"].flatten(), reduction="none")
    reward = (outputs["reward_pred"].float() - symlog(segment["reward"])).square()
    return {"policy": policy.view(shape), "obs": obs.view(shape), "reward": reward}


def term_weights(weights: torch.Tensor, segment: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-step weight of each loss term: the position weight, and for the next-observation term
    only where a next observation exists in the same episode."""
    return {"policy": weights, "obs": weights * segment["next_valid"], "reward": weights}


def weighted_sums(losses: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sum over the segment of each loss term times its weight (a sum, not a mean: the caller
    divides by the whole batch's total weight)."""
    return {k: (losses[k].flatten() * weights[k].flatten()).sum() for k in LOSS_TERMS}
