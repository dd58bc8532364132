"""The shipped backbones by short name, and their constructor arguments at each size.

A size is named after a bench preset, which fixes d_model and a parameter budget (within 10 %):
tiny (d_model 128, 400K), small (256, 5M), paper (512, 60M). A row gives the constructor keyword
arguments other than d_model that meet the budget; the comment above it shows the count.
"""

from __future__ import annotations

from typing import Any

REGISTRY: dict[str, str] = {
    "rwkv7": "architectures.rwkv7:RWKV7",
    "gdn": "architectures.gdn:GatedDeltaNet",
    "gsa": "architectures.gsa:GatedSlotAttention",
    "mamba2": "architectures.mamba2:Mamba2",
    "transformer": "architectures.transformer:Transformer",
    "lstm": "architectures.lstm:LSTM",
}
"""Short name -> "module:Class"; a module is imported only when its backbone is resolved."""

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "rwkv7": {
        # 426,880 (+6.7 %): 2 layers, 4 heads of 32, channel mix 4x as RWKV-7; LoRA widths 16
        # (fla's rule gives 32, 32, 32, 64: 471,936, +18.0 %) so that two layers fit the budget.
        "tiny": {
            "n_layers": 2,
            "n_heads": 4,
            "decay_low_rank_dim": 16,
            "a_low_rank_dim": 16,
            "v_low_rank_dim": 16,
            "gate_low_rank_dim": 16,
        },
        # 5,223,168 (+4.5 %): 6 layers, 4 heads of 64, fla's LoRA rule (32, 32, 32, 64).
        "small": {"n_layers": 6, "n_heads": 4},
        # 62,074,368 (+3.5 %): the paper's 18 layers x 8 heads of 64 at 512, fla's LoRA rule (64, 64, 32, 128).
        "paper": {"n_layers": 18, "n_heads": 8},
    },
    "gdn": {
        # 2 x 199.9K = 399.8K (-0.1 %): 4 heads of d_k 24 / d_v 48; MLP 2 * d_model (OmniRL's inner size ratio).
        "tiny": {"n_layers": 2, "n_heads": 4, "mlp_hidden": 256},
        # 6 x 793.4K = 4.76M (-4.8 %): 4 heads of d_k 48 / d_v 96; MLP 2 * d_model.
        "small": {"n_layers": 6, "n_heads": 4, "mlp_hidden": 512},
        # 18 x 3.16M = 56.9M (-5.1 %): the paper's 18 layers, 8 heads of d_k 48 (d_v 96), conv 4;
        # MLP 1024 as OmniRL's inner_hidden_size (fla's 1536 would give 71M, over budget).
        "paper": {"n_layers": 18, "n_heads": 8, "head_dim": 48, "mlp_hidden": 1024},
    },
    "gsa": {
        # 2 x 205.2K = 410.4K (+2.6 %): fla's MLP rounding (512) would not fit two layers, so 320.
        "tiny": {"n_layers": 2, "n_heads": 4, "n_slots": 32, "mlp_hidden": 320},
        # 6 x 820.0K = 4.92M (-1.6 %): 64 slots as the paper; MLP 640 instead of fla's 768 to fit six layers.
        "small": {"n_layers": 6, "n_heads": 4, "n_slots": 64, "mlp_hidden": 640},
        # 16 x 3.67M = 58.7M (-2.1 %): the paper's 64 slots at d_model 512, 8 heads, fla's MLP (1536).
        "paper": {"n_layers": 16, "n_heads": 8, "n_slots": 64},
    },
    "mamba2": {
        # 2 x (118.0K mixer + 84.6K MLP) = 405.3K (+1.3 %): 8 heads of 32, d_state 64, MLP 220 to fit two layers.
        "tiny": {"n_layers": 2, "n_heads": 8, "d_state": 64, "mlp_hidden": 220},
        # 4 x (432.0K mixer + 786.7K MLP) = 4.87M (-2.5 %): 8 heads of 64, d_state 64, MLP 4 d_model.
        "small": {"n_layers": 4, "n_heads": 8, "d_state": 64, "mlp_hidden": 1024},
        # 12 x (1.72M mixer + 3.15M MLP) = 58.4M (-2.7 %): the paper's 12 layers, expand 2, 16 heads
        # of 64, d_state 128 (fla's default, as OmniRL uses it), MLP 4 d_model.
        "paper": {"n_layers": 12, "n_heads": 16, "d_state": 128, "mlp_hidden": 2048},
    },
    "transformer": {
        # 2 x 201.0K = 401.9K (+0.5 %): 4 D^2 attention + 3 D x 352 MLP + norms; window 512 tokens.
        "tiny": {"n_layers": 2, "n_heads": 4, "window": 512, "mlp_hidden": 352},
        # 6 x 852.5K = 5.11M (+2.3 %): fla's MLP rule (768); window 2048 tokens.
        "small": {"n_layers": 6, "n_heads": 4, "window": 2048},
        # 18 x 3.41M = 61.4M (+2.3 %): the paper's depth and heads for RWKV-7 / GDN, fla's MLP (1536).
        "paper": {"n_layers": 18, "n_heads": 8, "window": 4096},
    },
    "lstm": {
        # 2 x 199.9K = 399.9K (-0.0 %): LSTM 8 D^2 + 8 D, MLP 3 D x 176, norms 2 D.
        "tiny": {"n_layers": 2, "mlp_hidden": 176},
        # 6 x 821.8K = 4.93M (-1.4 %): MLP 384.
        "small": {"n_layers": 6, "mlp_hidden": 384},
        # 16 x 3.68M = 58.8M (-2.0 %): MLP 1024.
        "paper": {"n_layers": 16, "mlp_hidden": 1024},
    },
}
"""Short name -> size name -> constructor keyword arguments other than d_model (and seed)."""
