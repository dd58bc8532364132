"""One optimiser step of the whole recipe per backbone at the tiny size, in two token layouts:
`grouped` (2 tokens per environment step) and `single` (1; the tiny preset's)."""

from __future__ import annotations

import pytest
import torch

from architectures import REGISTRY, SIZES
from bench.perf.backbones import available
from bench.perf.train import training_step
from benchmarks.record import record
from benchmarks.scale import SCALE

ARCHS = [name for name in available(list(REGISTRY))[0] if "tiny" in SIZES.get(name, {})]
LAYOUTS = ("grouped", "single")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_train_step(benchmark, arch: str, layout: str) -> None:
    batch, length, segment = SCALE.train_batch, SCALE.train_len, SCALE.train_segment
    model, one_step = training_step(arch, "tiny", segment, length, batch, torch.device("cpu"), layout)
    setting = f"tiny model, batch {batch} x {length} steps, segments of {segment}"
    per_call = {"env steps": batch * length, "tokens": batch * length * model.tokens_per_step}
    record(benchmark, "train", arch, layout, setting, per_call)
    benchmark.pedantic(one_step, rounds=SCALE.rounds, warmup_rounds=SCALE.warmup)
