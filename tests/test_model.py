"""ICRLModel: token layouts, causal placement of the heads, the stepping API, input checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from architectures.gsa import GatedSlotAttention
from bench.errors import BenchError
from bench.model import ICRLModel, build_model
from bench.presets import get_preset, max_states
from bench.recipe import prepare_batch, symlog
from tests.test_train import MICRO, synthetic_batch


def micro(layout: str, seed: int = 0) -> ICRLModel:
    preset = dataclasses.replace(MICRO, recipe=dataclasses.replace(MICRO.recipe, layout=layout))
    backbone = GatedSlotAttention(preset.d_model, n_layers=1, n_heads=2, n_slots=4, mlp_hidden=16, seed=seed)
    return ICRLModel(backbone, preset, seed=seed + 1).double()


def segment(seed: int = 0, length: int = 10) -> dict[str, torch.Tensor]:
    batch = synthetic_batch(seed, batch=2, length=length)
    batch["reward"] = torch.randn(2, length, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3
    return prepare_batch(batch, mask_id=16, mask_prob=0.0, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("layout", ["grouped", "paper", "single"])
def test_stepping_api_matches_forward(layout):
    model = micro(layout)
    seg = segment()
    out, _ = model(seg)
    state = model.start_state(2)
    for t in range(seg["obs"].shape[1]):
        logits, state = model.policy_logits_step(
            seg["obs"][:, t], seg["prompt"][:, t], seg["tag"][:, t], seg["prev_reward"][:, t], seg["first"][:, t], state
        )
        torch.testing.assert_close(logits, out["policy_logits"][:, t], rtol=1e-9, atol=1e-9)
        state = model.feed_action(seg["action"][:, t], state)
    assert model.tokens_per_step == {"grouped": 2, "paper": 5, "single": 1}[layout]


@pytest.mark.parametrize("layout", ["grouped", "paper", "single"])
def test_heads_see_only_what_precedes_their_target(layout):
    """Changing the action, reward or next observation of step t must not change the prediction
    of that very field at step t, but must reach later steps."""
    model = micro(layout)
    base = segment()
    out, _ = model(base)
    t = 4
    for field, head in (("action", "policy_logits"), ("reward", "reward_pred"), ("obs", "obs_logits")):
        changed = {k: v.clone() for k, v in base.items()}
        step = t + 1 if field == "obs" else t  # the obs head at t predicts obs[t + 1]
        if field == "action":
            changed["action"][:, t] = (changed["action"][:, t] + 1) % 5
            changed["prev_action"][:, t + 1] = changed["action"][:, t]
        elif field == "reward":
            changed["reward"][:, t] += 5.0
            changed["prev_reward"][:, t + 1] += 5.0
        else:
            changed["obs"][:, step] = (changed["obs"][:, step] + 1) % 8
        new, _ = model(changed)
        torch.testing.assert_close(new[head][:, : t + 1], out[head][:, : t + 1], rtol=0, atol=0)
        assert not torch.allclose(new["policy_logits"][:, t + 1 :], out["policy_logits"][:, t + 1 :])


def test_single_token_world_model_heads_are_conditioned_on_the_action_taken():
    """In the one-token layout the action of step t enters with token t + 1, so the next-observation
    and reward heads at t select their prediction by that action: changing it changes them at t
    (and the policy only from t + 1 on)."""
    model = micro("single")
    base = segment()
    out, _ = model(base)
    changed = {k: v.clone() for k, v in base.items()}
    t = 4
    changed["action"][:, t] = (changed["action"][:, t] + 1) % 5
    changed["prev_action"][:, t + 1] = changed["action"][:, t]
    new, _ = model(changed)
    for head in ("obs_logits", "reward_pred"):
        assert not torch.allclose(new[head][:, t], out[head][:, t]), head
        torch.testing.assert_close(new[head][:, :t], out[head][:, :t], rtol=0, atol=0)
    torch.testing.assert_close(new["policy_logits"][:, : t + 1], out["policy_logits"][:, : t + 1], rtol=0, atol=0)
    assert model.action_embed.num_embeddings == 6  # the five actions and "none" at a sequence start
    assert base["prev_action"][:, 0].eq(-1).all() and torch.equal(base["prev_action"][:, 1:], base["action"][:, :-1])


def test_first_flag_and_prompt_reach_the_policy():
    model = micro("grouped")
    base = segment()
    out, _ = model(base)
    for field in ("first", "prompt", "tag"):
        changed = {k: v.clone() for k, v in base.items()}
        changed[field][:, 3] = 1 - changed[field][:, 3].long() if field == "first" else changed[field][:, 3] + 1
        new, _ = model(changed)
        assert not torch.allclose(new["policy_logits"][:, 3], out["policy_logits"][:, 3]), field


def test_symlog_and_shapes():
    torch.testing.assert_close(
        symlog(torch.tensor([-(torch.e - 1), 0.0, 3.0])),
        torch.tensor([-1.0, 0.0, 2 * torch.log(torch.tensor(2.0)).item()]),
    )
    model = micro("paper")
    out, state = model(segment(length=7))
    assert out["policy_logits"].shape == (2, 7, 5)
    assert out["obs_logits"].shape == (2, 7, max_states(MICRO)) and out["reward_pred"].shape == (2, 7)
    assert model.recipe_parameter_count() > 0


def test_input_checks():
    model = micro("grouped")
    bad = segment()
    bad["obs"][0, 0] = 99
    with pytest.raises(BenchError, match="observation ids"):
        model(bad)
    bad = segment()
    bad["action"][0, 0] = 5
    with pytest.raises(BenchError, match="action ids"):
        model(bad)
    tiny = get_preset("tiny")
    with pytest.raises(BenchError, match="unknown layout"):
        ICRLModel(
            micro("grouped").backbone, dataclasses.replace(tiny, recipe=dataclasses.replace(tiny.recipe, layout="x"))
        )
    with pytest.raises(BenchError, match="d_model"):
        ICRLModel(micro("grouped").backbone, tiny)


def test_build_model_is_seeded():
    a, kwargs = build_model("gsa", get_preset("tiny"), seed=3)
    b, _ = build_model("gsa", get_preset("tiny"), seed=3)
    c, _ = build_model("gsa", get_preset("tiny"), seed=4)
    assert kwargs == {"n_layers": 2, "n_heads": 4, "n_slots": 32, "mlp_hidden": 320}
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["obs_embed.weight"], sc["obs_embed.weight"])
