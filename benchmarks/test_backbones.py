"""Each backbone's layer, forward + backward in its chunked form (`forward`) and its recurrent form
(`step` token by token), and one recurrent step of the tiny preset's backbone (rollouts)."""

from __future__ import annotations

import pytest
import torch

from architectures import REGISTRY, build_backbone
from bench.perf.backbones import D_MODEL, available, chunked_pass, one_layer, recurrent_pass
from benchmarks.record import record
from benchmarks.scale import SCALE

ARCHS, _ = available(list(REGISTRY))
PASSES = {"chunked": chunked_pass, "recurrent": recurrent_pass}


@pytest.mark.parametrize("form", PASSES)
@pytest.mark.parametrize("arch", ARCHS)
def test_layer(benchmark, arch: str, form: str) -> None:
    model = one_layer(arch)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SCALE.layer_batch, SCALE.layer_len, D_MODEL, generator=generator, requires_grad=True)

    def clear(model: torch.nn.Module, x: torch.Tensor) -> None:
        model.zero_grad(set_to_none=True)
        x.grad = None

    setting = f"one layer, d_model {D_MODEL}, B {SCALE.layer_batch}, T {SCALE.layer_len}"
    record(benchmark, "layer", arch, form, setting, {"tokens": SCALE.layer_batch * SCALE.layer_len})
    # The step loop runs once: it is seconds long, and the chunked form's warm-up is not needed there.
    rounds, warmup = (SCALE.rounds, SCALE.warmup) if form == "chunked" else (1, 0)
    benchmark.pedantic(PASSES[form], args=(model, x), teardown=clear, rounds=rounds, warmup_rounds=warmup)


@pytest.mark.parametrize("arch", ARCHS)
def test_step(benchmark, arch: str) -> None:
    model = build_backbone(arch, D_MODEL, "tiny")
    x = torch.randn(SCALE.step_batch, model.d_model, generator=torch.Generator().manual_seed(0))
    state = model.init_state(SCALE.step_batch, "cpu")
    setting = f"the tiny preset's backbone, B {SCALE.step_batch}, no grad"
    columns = {"state numbers per sequence": model.state_size()}
    record(benchmark, "step", arch, "step", setting, {"env steps": SCALE.step_batch}, columns)
    with torch.no_grad():
        benchmark.pedantic(model.step, args=(x, state), rounds=SCALE.step_rounds, warmup_rounds=SCALE.warmup)
