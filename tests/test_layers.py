"""Shared layers: the short causal convolution against PyTorch's depthwise conv1d."""

import torch
import torch.nn.functional as F

from architectures.layers import ShortConv


def test_short_conv_matches_depthwise_conv1d_and_steps():
    gen = torch.Generator().manual_seed(5)
    conv = ShortConv(12, 4)
    with torch.no_grad():
        conv.bias.normal_(generator=gen)
    x, cache = torch.randn(2, 9, 12, generator=gen), torch.randn(2, 3, 12, generator=gen)
    y, new_cache = conv(x, cache)
    full = torch.cat([cache, x], dim=1)
    want = F.silu(F.conv1d(full.transpose(1, 2), conv.weight, conv.bias, groups=12).transpose(1, 2))
    assert torch.allclose(y, want, atol=1e-6)
    assert torch.equal(new_cache, full[:, -3:])
    steps, step_cache = [], cache
    for t in range(x.shape[1]):
        y_t, step_cache = conv.step(x[:, t], step_cache)
        steps.append(y_t)
    assert torch.allclose(torch.stack(steps, 1), y, atol=1e-6)
    assert torch.equal(step_cache, new_cache)
