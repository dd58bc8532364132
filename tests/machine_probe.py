"""Digests of everything that defines the benchmark, computed at micro scale; printed as JSON.

`test_machine_independence.py` runs this file in subprocesses under other BLAS kernels, thread
counts and SIMD dispatch, and demands the same output from each: tasks (AnyMDP of every test ns
group, bandits, Garnet), their oracle and random returns and label actions, the bytes of a micro
data shard, and baseline rollouts (oracle, random, TQL-UCB).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from bench import rollout as ro
from bench.anymdp import sample_garnet
from bench.anymdp.solvers import TaskArrays, label_policy, oracle_returns, random_returns
from bench.data import split as sp
from bench.data.behavior import PROMPT_ORACLE, TAG_UNKNOWN
from bench.data.shards import synthesize_shard
from bench.presets import PRESETS

TEST_TASKS = {1: 3, 8: 4, 16: 4, 32: 1, 64: 1}
"""Test tasks per ns group: the first of each group of the committed test manifests."""


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def micro_preset():
    tiny = PRESETS["tiny"]
    data = dataclasses.replace(tiny.data, train_tasks=6, valid_tasks=2, seq_len=300, shard_size=6)
    return dataclasses.replace(tiny, name="micro", data=data)


def probe() -> dict:
    tiny = PRESETS["tiny"]
    specs = [
        (ns, tiny.data.na, sp.task_seed(tiny, "test", ns << sp.TEST_NS_SHIFT | j))
        for ns, count in TEST_TASKS.items()
        for j in range(count)
    ]
    tasks = sp.sample_tasks(specs)
    out: dict = {"test_tasks": [[ns, seed, task.fingerprint()] for (ns, _, seed), task in zip(specs, tasks)]}
    out["garnet"] = [sample_garnet(ns, 5, 2, seed).fingerprint() for ns, seed in ((16, 0), (16, 1), (64, 0))]
    arrays = TaskArrays.stack(tasks)
    out["solvers"] = digest(oracle_returns(arrays), random_returns(arrays), label_policy(arrays))
    shard = synthesize_shard(micro_preset(), "train", 0)
    out["shard"] = {name: digest(array) for name, array in sorted(shard.items())}
    small = [t for t in tasks if t.ns <= 16]
    agents = {
        "oracle": ro.OracleAgent(small),
        "random": ro.RandomAgent(tiny.data.na),
        "tql_ucb": ro.TQLUCBAgent(len(small), 16, tiny.data.na, seed=3),
    }
    out["rollouts"] = {
        name: digest(
            *dataclasses.astuple(ro.rollout(agent, small, 300, 3, tiny.recipe.temperature, PROMPT_ORACLE, TAG_UNKNOWN))[
                :3
            ]
        )
        for name, agent in agents.items()
    }
    return out


if __name__ == "__main__":
    print(json.dumps(probe()))
