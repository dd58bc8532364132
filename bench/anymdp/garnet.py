"""Garnet(ns, na, b): the classic unstructured random MDP, as the control for AnyMDP.

Follows xenoverse 0.1.14.0 `GarnetTaskSampler` / `sample_garnet` (Archibald et al. 1995;
Bhatnagar et al. 2009): each (s, a) moves to `b` distinct next states drawn uniformly, with
probabilities from a uniform random partition of 1 (a flat Dirichlet); rewards ~ N(0, sigma^2)
on every (s, a, s'), no noise, no terminal states, start at inner state 0; episode length drawn
as for AnyMDP. No repair loop and no quality filter. Portable arithmetic (`bench.anymdp.portable`).
"""

from __future__ import annotations

import math

import numpy as np

from bench.anymdp import portable as pt
from bench.anymdp.sampler import check_int, sample_max_steps
from bench.anymdp.task import Task
from bench.errors import BenchError

GARNET_STREAM = 0x4741524E  # separates Garnet seeds from AnyMDP seeds
DEFAULT_REWARD_STD = 0.1  # GarnetTaskSampler's default sigma
MIN_GARNET_STATES = 2  # xenoverse asserts ns >= 8; Garnet is well defined from 2


def sample_garnet(ns: int, na: int, b: int, seed: int, reward_std: float = DEFAULT_REWARD_STD) -> Task:
    """One Garnet task, a pure function of the arguments (same arrays in any process)."""
    ns = check_int("ns", ns, MIN_GARNET_STATES)
    na = check_int("na", na, 2)
    b = check_int("b", b, 1)
    if b > ns:
        raise BenchError(f"b (branching) must be in [1, ns={ns}]; got {b}")
    seed = check_int("seed", seed, 0)
    if isinstance(reward_std, bool) or not isinstance(reward_std, (int, float)) or not reward_std >= 0:
        raise BenchError(f"reward_std must be a number >= 0; got {reward_std!r}")
    rng = pt.Variates(np.random.default_rng([GARNET_STREAM, ns, na, b, seed]))
    horizon = math.ceil(sample_max_steps(rng, ns))
    permutation = rng.permutation(ns)
    # b distinct next states per (s, a): the b smallest of ns uniform keys
    next_states = np.argsort(rng.random((ns, na, ns)), axis=2, kind="stable")[:, :, :b]
    cuts = np.sort(rng.random((ns, na, b - 1)), axis=2)
    edges = np.concatenate([np.zeros((ns, na, 1)), cuts, np.ones((ns, na, 1))], axis=2)
    transition = np.zeros((ns, na, ns))
    np.put_along_axis(transition, next_states, np.diff(edges, axis=2), axis=2)
    reward = rng.standard_normal((ns, na, ns)) * float(reward_std)
    start = np.zeros(ns)
    start[0] = 1.0
    return Task(
        transition=transition, reward=reward, reward_noise=np.zeros((ns, na, ns)), start=start,
        terminal=np.zeros(ns, dtype=bool), horizon=horizon, permutation=permutation, kind="garnet", seed=seed,
    )  # fmt: skip
