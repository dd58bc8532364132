"""`ICRLModel`: the recipe's embeddings, a backbone, a final RMSNorm and three heads.

Each environment step becomes `tokens_per_step` tokens (layout from `preset.recipe.layout`,
docs/recipe.md). Every field is embedded (rewards by a linear map), the fields of one token are
summed with that token's slot-type embedding, and the tokens are interleaved in time order. A
target is predicted at the output of the token just before the token that holds it:

    layout   slot 0                                  slot 1   slot 2  slot 3   slot 4
    paper    obs + first                             prompt   tag     action   reward
    grouped  prev reward + obs + prompt + tag + first action

    head          paper: read at  grouped: read at  target
    policy        tag  (slot 2)   slot 0            label action (cross-entropy)
    reward        action (slot 3) action (slot 1)   reward of this step (MSE)
    next obs      reward (slot 4) action (slot 1)   next observation (cross-entropy)

`first` marks the first step of an episode, so episode boundaries are visible to the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from architectures.base import Backbone, State, count_parameters
from architectures.layers import RMSNorm
from bench.errors import BenchError
from bench.presets import Preset

LAYOUTS = {"paper": 5, "grouped": 2}
"""Tokens per environment step of each layout."""
POLICY_SLOT = {"paper": 2, "grouped": 0}
REWARD_SLOT = {"paper": 3, "grouped": 1}
NEXT_OBS_SLOT = {"paper": 4, "grouped": 1}
EMBED_STD = 0.02
DEFAULT_FIELD_VOCAB = 16
"""Embedding rows for prompt and tag ids (ids must be below it; the data uses a handful)."""


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log(1 + |x|): rewards enter the model and the reward loss on this scale, since
    AnyMDP rewards span about -35 to 100 with most within +-2 (docs/recipe.md)."""
    return torch.sign(x) * torch.log1p(x.abs())


def max_states(preset: Preset) -> int:
    """The largest observation id + 1 over the preset's training and test tasks."""
    return max(preset.data.train_ns[1], *preset.data.test_ns)


@dataclass
class StepState:
    """Rollout state of `ICRLModel`'s stepping API: the backbone state and whether a step was taken
    (the paper layout feeds the previous step's reward token only after the first step)."""

    backbone: State
    """The backbone's recurrent state."""
    started: bool = False
    """True once the first step of the stream has been fed."""


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
        layout = preset.recipe.layout
        if layout not in LAYOUTS:
            raise BenchError(f"unknown layout {layout!r}; choose from: {', '.join(LAYOUTS)}")
        if backbone.d_model != preset.d_model:
            raise BenchError(f"backbone d_model={backbone.d_model} differs from preset {preset.name!r} d_model={preset.d_model}")
        d = preset.d_model
        self.layout = layout
        self.tokens_per_step = LAYOUTS[layout]
        self.n_obs = max_states(preset)
        self.mask_id = self.n_obs  # observation id used for masked inputs
        self.na = preset.data.na
        self.backbone = backbone
        self.obs_embed = nn.Embedding(self.n_obs + 1, d)
        self.prompt_embed = nn.Embedding(n_prompts, d)
        self.tag_embed = nn.Embedding(n_tags, d)
        self.action_embed = nn.Embedding(self.na, d)
        self.first_embed = nn.Embedding(2, d)
        self.reward_embed = nn.Linear(1, d)
        self.slot_embed = nn.Embedding(self.tokens_per_step, d)
        self.norm = RMSNorm(d)
        self.policy_head = nn.Linear(d, self.na)
        self.obs_head = nn.Linear(d, self.n_obs)
        self.reward_head = nn.Linear(d, 1)
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

    def _slot(self, index: int) -> torch.Tensor:
        return self.slot_embed.weight[index]

    def _check_ids(self, obs: torch.Tensor, action: torch.Tensor | None) -> None:
        if obs.numel() and (int(obs.min()) < 0 or int(obs.max()) > self.mask_id):
            raise BenchError(f"observation ids must be in [0, {self.n_obs}] (mask id {self.mask_id}); got {int(obs.min())}..{int(obs.max())}")
        if action is not None and action.numel() and (int(action.min()) < 0 or int(action.max()) >= self.na):
            raise BenchError(f"action ids must be in [0, {self.na}); got {int(action.min())}..{int(action.max())}")

    def step_tokens(
        self,
        obs: torch.Tensor,
        prompt: torch.Tensor,
        tag: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        prev_reward: torch.Tensor,
        first: torch.Tensor,
    ) -> torch.Tensor:
        """Fields (B, L) -> tokens (B, L * tokens_per_step, D) in time order."""
        obs_part = self.obs_embed(obs.long()) + self.first_embed(first.long())
        if self.layout == "grouped":
            slots = [
                obs_part + self.prompt_embed(prompt.long()) + self.tag_embed(tag.long()) + self._reward_in(prev_reward),
                self.action_embed(action.long()),
            ]
        else:
            slots = [
                obs_part,
                self.prompt_embed(prompt.long()),
                self.tag_embed(tag.long()),
                self.action_embed(action.long()),
                self._reward_in(reward),
            ]
        tokens = torch.stack([s + self._slot(i) for i, s in enumerate(slots)], dim=2)  # (B, L, k, D)
        return tokens.flatten(1, 2)

    # ---- training --------------------------------------------------------------------------

    def forward(self, segment: dict[str, torch.Tensor], state: State | None = None) -> tuple[dict[str, torch.Tensor], State]:
        """One segment of steps -> head outputs per step and the backbone state after it.

        `segment` holds (B, L) fields obs, prompt, tag, action, reward, prev_reward (reward of the
        step before, 0 at a sequence start) and first (bool). Returns policy_logits (B, L, na),
        obs_logits (B, L, n_obs) (the next observation) and reward_pred (B, L) (symlog of the reward)."""
        self._check_ids(segment["obs"], segment["action"])
        tokens = self.step_tokens(
            segment["obs"], segment["prompt"], segment["tag"], segment["action"],
            segment["reward"], segment["prev_reward"], segment["first"],
        )
        hidden, state = self.backbone(tokens, state)
        hidden = self.norm(hidden).unflatten(1, (-1, self.tokens_per_step))  # (B, L, k, D)
        outputs = {
            "policy_logits": self.policy_head(hidden[:, :, POLICY_SLOT[self.layout]]),
            "reward_pred": self.reward_head(hidden[:, :, REWARD_SLOT[self.layout]]).squeeze(-1),
            "obs_logits": self.obs_head(hidden[:, :, NEXT_OBS_SLOT[self.layout]]),
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
        obs_part = self.obs_embed(obs.long()) + self.first_embed(first.long())
        if self.layout == "grouped":
            if not state.started:
                prev_reward = torch.zeros_like(prev_reward, dtype=torch.float32)
            token = obs_part + self.prompt_embed(prompt.long()) + self.tag_embed(tag.long()) + self._reward_in(prev_reward)
            out = self._feed(token + self._slot(0), state)
        else:
            if state.started:
                self._feed(self._reward_in(prev_reward) + self._slot(4), state)
            self._feed(obs_part + self._slot(0), state)
            self._feed(self.prompt_embed(prompt.long()) + self._slot(1), state)
            out = self._feed(self.tag_embed(tag.long()) + self._slot(2), state)
        state.started = True
        return self.policy_head(self.norm(out)), state

    @torch.no_grad()
    def feed_action(self, action: torch.Tensor, state: StepState) -> StepState:
        """Feed the action taken (B,) after `policy_logits_step`."""
        slot = 1 if self.layout == "grouped" else 3
        self._feed(self.action_embed(action.long()) + self._slot(slot), state)
        return state


def build_model(
    arch: str, preset: Preset, seed: int = 0, n_prompts: int = DEFAULT_FIELD_VOCAB, n_tags: int = DEFAULT_FIELD_VOCAB
) -> tuple[ICRLModel, dict]:
    """The model for `arch` (registry name or `pkg.module:Class`) at `preset`, and the backbone's
    constructor keyword arguments. Backbone weights from `seed`, recipe weights from `seed + 1`."""
    import architectures

    builder = getattr(architectures, "build_backbone", None)
    cls = architectures.resolve(arch)
    kwargs = dict(cls.preset_kwargs.get(preset.name, {}))
    if builder is not None:
        backbone = builder(arch, preset.name, seed=seed)
    else:
        if preset.name not in cls.preset_kwargs:
            raise BenchError(f"architecture {arch!r} has no settings for preset {preset.name!r}; it has: {', '.join(cls.preset_kwargs) or 'none'}")
        backbone = cls(preset.d_model, seed=seed, **kwargs)
    return ICRLModel(backbone, preset, n_prompts=n_prompts, n_tags=n_tags, seed=seed + 1), kwargs
