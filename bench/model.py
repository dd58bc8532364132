"""`ICRLModel`: the recipe's embeddings, a backbone, a final RMSNorm and three heads.

Each environment step becomes `layout.tokens_per_step` tokens (`bench.recipe.LAYOUTS`, chosen by
`preset.recipe.layout`, docs/recipe.md). Every field is embedded (rewards by a linear map after
symlog), the fields of one token are summed with that token's slot embedding, and the tokens are
interleaved in time order. The policy head reads the token before the action; the reward and
next-observation heads read the slots the layout names.

`first` marks the first step of an episode, so episode boundaries are visible to the model.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from architectures import build_backbone, resolve, size_kwargs
from architectures.base import Backbone, State, count_parameters
from architectures.layers import RMSNorm
from bench.errors import BenchError
from bench.presets import Preset, backbone_size, max_states
from bench.recipe import get_layout, symlog

EMBED_STD = 0.02
DEFAULT_FIELD_VOCAB = 16
"""Embedding rows for prompt and tag ids (ids must be below it; the data uses a handful)."""


@dataclass
class StepState:
    """Rollout state of `ICRLModel`'s stepping API: the backbone state and whether a step was taken
    (the paper layout feeds the previous step's reward token only after the first step)."""

    backbone: State
    """The backbone's recurrent state."""
    started: bool = False
    """True once the first step of the stream has been fed."""
    prev_action: torch.Tensor | None = None
    """The action taken at the last step, for a layout that feeds it with the next step's token."""


class ICRLModel(nn.Module):
    """Embeddings + backbone + final RMSNorm + policy / next-observation / reward heads."""

    def __init__(
        self,
        backbone: Backbone,
        preset: Preset,
        n_prompts: int = DEFAULT_FIELD_VOCAB,
        n_tags: int = DEFAULT_FIELD_VOCAB,
        seed: int = 0,
    ) -> None:
        super().__init__()
        layout = get_layout(preset.recipe.layout)
        if backbone.d_model != preset.d_model:
            raise BenchError(
                f"backbone d_model={backbone.d_model} differs from preset {preset.name!r} d_model={preset.d_model}"
            )
        d = preset.d_model
        self.layout = layout
        self.tokens_per_step = layout.tokens_per_step
        self.n_obs = max_states(preset)
        self.mask_id = self.n_obs  # observation id used for masked inputs
        self.na = preset.data.na
        self.backbone = backbone
        self.obs_embed = nn.Embedding(self.n_obs + 1, d)
        self.prompt_embed = nn.Embedding(n_prompts, d)
        self.tag_embed = nn.Embedding(n_tags, d)
        # a layout with prev_action has one more action id: "none" (na), at a sequence start
        has_prev_action = any("prev_action" in slot for slot in layout.slots)
        self.action_embed = nn.Embedding(self.na + has_prev_action, d)
        self.first_embed = nn.Embedding(2, d)
        self.reward_embed = nn.Linear(1, d)
        self.slot_embed = nn.Embedding(self.tokens_per_step, d)
        self.norm = RMSNorm(d)
        self.policy_head = nn.Linear(d, self.na)
        # action-conditioned world-model heads: one prediction per action, selected by the action taken
        world_outputs = self.na if layout.action_conditioned else 1
        self.obs_head = nn.Linear(d, self.n_obs * world_outputs)
        self.reward_head = nn.Linear(d, world_outputs)
        self._init_recipe_parameters(torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def _init_recipe_parameters(self, generator: torch.Generator) -> None:
        """Embeddings and heads ~ N(0, 0.02^2), biases 0 (the backbone initialises itself)."""
        for name, module in self.named_children():
            if name == "backbone":
                continue
            if isinstance(module, (nn.Embedding, nn.Linear)):
                module.weight.normal_(0.0, EMBED_STD, generator=generator)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()

    def recipe_parameter_count(self) -> int:
        """Parameters outside the backbone (embeddings, norm, heads)."""
        return count_parameters(self) - count_parameters(self.backbone)

    # ---- token building -------------------------------------------------------------------

    def _reward_in(self, reward: torch.Tensor) -> torch.Tensor:
        return self.reward_embed(symlog(reward.to(self.reward_embed.weight.dtype)).unsqueeze(-1))

    def _check_ids(self, obs: torch.Tensor, action: torch.Tensor | None) -> None:
        if obs.numel() and (int(obs.min()) < 0 or int(obs.max()) > self.mask_id):
            raise BenchError(
                f"observation ids must be in [0, {self.n_obs}] (mask id {self.mask_id}); "
                f"got {int(obs.min())}..{int(obs.max())}"
            )
        if action is not None and action.numel() and (int(action.min()) < 0 or int(action.max()) >= self.na):
            raise BenchError(f"action ids must be in [0, {self.na}); got {int(action.min())}..{int(action.max())}")

    def _field(self, name: str, fields: dict[str, torch.Tensor]) -> torch.Tensor:
        """The embedding of one field of a token (`obs` carries the episode-start flag)."""
        if name == "obs":
            return self.obs_embed(fields["obs"].long()) + self.first_embed(fields["first"].long())
        if name in ("reward", "prev_reward"):
            return self._reward_in(fields[name])
        if name == "prev_action":
            action = fields["prev_action"].long()
            return self.action_embed(torch.where(action < 0, self.na, action))
        table = {"prompt": self.prompt_embed, "tag": self.tag_embed, "action": self.action_embed}[name]
        return table(fields[name].long())

    def _token(self, slot: int, fields: dict[str, torch.Tensor]) -> torch.Tensor:
        """Slot `slot`'s token: its fields' embeddings summed in layout order, plus the slot embedding."""
        names = self.layout.slots[slot]
        token = self._field(names[0], fields)
        for name in names[1:]:
            token = token + self._field(name, fields)
        return token + self.slot_embed.weight[slot]

    def step_tokens(self, fields: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, L) fields -> tokens (B, L * tokens_per_step, D) in time order."""
        tokens = torch.stack([self._token(i, fields) for i in range(self.tokens_per_step)], dim=2)  # (B, L, k, D)
        return tokens.flatten(1, 2)

    # ---- training --------------------------------------------------------------------------

    def forward(
        self, segment: dict[str, torch.Tensor], state: State | None = None
    ) -> tuple[dict[str, torch.Tensor], State]:
        """One segment of steps -> head outputs per step and the backbone state after it.

        `segment` holds (B, L) fields obs, prompt, tag, action, reward, prev_reward (reward of the
        step before, 0 at a sequence start) and first (bool). Returns policy_logits (B, L, na),
        obs_logits (B, L, n_obs) (the next observation) and reward_pred (B, L) (symlog of the reward)."""
        self._check_ids(segment["obs"], segment["action"])
        tokens = self.step_tokens(segment)
        hidden, state = self.backbone(tokens, state)
        hidden = self.norm(hidden).unflatten(1, (-1, self.tokens_per_step))  # (B, L, k, D)
        reward = self.reward_head(hidden[:, :, self.layout.reward_read])
        obs_logits = self.obs_head(hidden[:, :, self.layout.next_obs_read])
        if self.layout.action_conditioned:  # pick each step's prediction for the action taken
            action = segment["action"].long().unsqueeze(-1)
            reward = reward.gather(-1, action)
            obs_logits = obs_logits.unflatten(-1, (self.na, self.n_obs))
            obs_logits = obs_logits.gather(2, action.unsqueeze(-1).expand(*action.shape, self.n_obs)).squeeze(2)
        outputs = {
            "policy_logits": self.policy_head(hidden[:, :, self.layout.policy_read]),
            "reward_pred": reward.squeeze(-1),
            "obs_logits": obs_logits,
        }
        return outputs, state

    # ---- stepping (rollouts) ---------------------------------------------------------------

    def start_state(self, batch_size: int, device: torch.device | str = "cpu") -> StepState:
        return StepState(self.backbone.init_state(batch_size, device))

    def _feed(self, token: torch.Tensor, state: StepState) -> torch.Tensor:
        out, state.backbone = self.backbone.step(token, state.backbone)
        return out

    @torch.no_grad()
    def policy_logits_step(
        self,
        obs: torch.Tensor,
        prompt: torch.Tensor,
        tag: torch.Tensor,
        prev_reward: torch.Tensor,
        first: torch.Tensor,
        state: StepState,
    ) -> tuple[torch.Tensor, StepState]:
        """Feed one step's observation side (B,) fields; returns the policy logits (B, na).

        `prev_reward` is the reward of the previous step (ignored at the first step of the stream);
        `first` marks the first step of an episode. Constant cost per call."""
        self._check_ids(obs, None)
        if not state.started:
            prev_reward = torch.zeros_like(prev_reward, dtype=torch.float32)
        no_action = torch.full_like(obs, -1)
        fields = {
            "obs": obs,
            "prompt": prompt,
            "tag": tag,
            "first": first,
            "prev_reward": prev_reward,
            "reward": prev_reward,
            "prev_action": state.prev_action if state.started and state.prev_action is not None else no_action,
        }
        action_slot = self.layout.action_slot
        if state.started and action_slot is not None:  # the slots after the action hold the previous outcome
            for slot in range(action_slot + 1, self.tokens_per_step):
                self._feed(self._token(slot, fields), state)
        for slot in range(self.tokens_per_step if action_slot is None else action_slot):
            out = self._feed(self._token(slot, fields), state)
        state.started = True
        return self.policy_head(self.norm(out)), state

    @torch.no_grad()
    def feed_action(self, action: torch.Tensor, state: StepState) -> StepState:
        """Feed the action taken (B,) after `policy_logits_step` (kept for the next step's token
        when the layout has no action slot)."""
        if self.layout.action_slot is None:
            state.prev_action = action.clone()
        else:
            self._feed(self._token(self.layout.action_slot, {"action": action}), state)
        return state


def build_model(
    arch: str,
    preset: Preset,
    seed: int = 0,
    n_prompts: int = DEFAULT_FIELD_VOCAB,
    n_tags: int = DEFAULT_FIELD_VOCAB,
    overrides: dict[str, Any] | None = None,
) -> tuple[ICRLModel, dict]:
    """The model for `arch` (registry name or `pkg.module:Class`) at `preset`, and the backbone's
    constructor keyword arguments: its size's (`backbone_size(preset)`) updated by `overrides`.
    Backbone weights from `seed`, recipe weights from `seed + 1`."""
    kwargs = {**size_kwargs(arch, backbone_size(preset)), **check_overrides(arch, overrides or {})}
    backbone = build_backbone(arch, preset.d_model, seed=seed, **kwargs)
    return ICRLModel(backbone, preset, n_prompts=n_prompts, n_tags=n_tags, seed=seed + 1), kwargs


def check_overrides(arch: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` if every key is a constructor argument of `arch` other than d_model and seed,
    else a BenchError naming the accepted ones."""
    parameters = inspect.signature(resolve(arch).__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return overrides
    accepted = [name for name in parameters if name not in ("self", "d_model", "seed")]
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise BenchError(
            f"--arch-kwargs: {', '.join(unknown)} not accepted by {arch!r} "
            f"(d_model and seed come from the preset and --seed); accepted: {', '.join(accepted)}"
        )
    return overrides
