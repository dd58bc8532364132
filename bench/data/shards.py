"""Shards of DPD sequences on disk: build (resumable, parallel, `--shard k/N`), verify, manifests.

Layout under a preset's data root (default `datasets/anymdp-v2/<preset>/`, or
`$ANYMDP_BENCH_DATA/<preset>/`):

    <split>/shard-00003/<field>.npy   (n_seq, T) per step field, (n_seq,) or (n_seq, 32) per sequence
    <split>/shard-00003/shard.json    sha256 of every file of the shard; written last (= finished)
    <split>/manifest.json             every shard's entry, written once all shards are finished

Shard k of a split holds sequences [k * shard_size, (k + 1) * shard_size). Every file is written
atomically, so an interrupted build resumes: finished shards whose checksums match are skipped.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench import distributed
from bench.anymdp.solvers import TaskArrays, label_policy, oracle_returns, random_returns
from bench.anymdp.task import ARRAYS, Task
from bench.data import split as sp
from bench.data.synth import FIELDS, sub_batches, synthesize
from bench.errors import BenchError
from bench.io import atomic_save_npy, atomic_write_json, sha256_file
from bench.presets import Preset

FORMAT = "anymdp-dpd-v2"
"""Data format id: bump when the synthesis or the layout changes (it changes every byte)."""
REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_ROOT = REPO_ROOT / "datasets" / "anymdp-v2"
"""Committed manifests (test split, train digest): MANIFEST_ROOT / <preset> / {test,train}.json."""
OLD_DATA = REPO_ROOT / "datasets" / "anymdp-v1"
"""Data of split/data version 1 (machine-dependent tasks): no longer read."""
DATA_ENV = "ANYMDP_BENCH_DATA"
"""Environment variable overriding the folder that holds each preset's data folder."""
SPLITS = ("train", "valid")
META_FIELDS = {
    "ns": np.int16,
    "seed": np.int64,
    "j_opt": np.float64,
    "j_rand": np.float64,
    "task_fp": np.uint8,
    "task_sums": np.float64,
}  # fmt: skip
"""Per-sequence fields: state count, task seed, oracle and random expected returns, task fingerprint
(32 bytes) and the sums of the task's arrays (`Task.array_sums`, to explain a drift)."""
ROUNDING_LEVEL = 1e-9
"""A drifted array whose sum moved by less than this (relative) differs by rounding, not by design."""


def data_root(preset: Preset, root: str | os.PathLike | None = None) -> Path:
    """The folder holding `preset`'s train/ and valid/ splits."""
    if root is not None:
        path = Path(root)
    else:
        base = os.environ.get(DATA_ENV)
        path = (Path(base) if base else MANIFEST_ROOT) / preset.name
    if path.exists() and not path.is_dir():
        raise BenchError(f"data root {str(path)!r} is a file; give a folder (or unset {DATA_ENV})")
    return path


def n_split_tasks(preset: Preset, split: str) -> int:
    if split not in SPLITS:
        raise BenchError(f"unknown data split {split!r}; choose from: {', '.join(SPLITS)}")
    return preset.data.train_tasks if split == "train" else preset.data.valid_tasks


def n_shards(preset: Preset, split: str) -> int:
    return -(-n_split_tasks(preset, split) // preset.data.shard_size)


def parse_shard_spec(spec: str) -> tuple[int, int]:
    """'k/N' -> (k, N) with 0 <= k < N: build shards k, k + N, k + 2N, ..."""
    parts = str(spec).split("/")
    try:
        k, n = (int(p) for p in parts)
        if len(parts) != 2:
            raise ValueError
    except ValueError:
        raise BenchError(f"shard spec must be 'k/N' with integers 0 <= k < N; got {spec!r}") from None
    if not 0 <= k < n:
        raise BenchError(f"shard spec must be 'k/N' with integers 0 <= k < N; got {spec!r}")
    return k, n


def definition(preset: Preset, split: str) -> dict:
    """Everything that fixes a split's bytes (its tasks, sequence length, sharding and behavior mixture)."""
    spec = preset.data
    return {
        "format": FORMAT,
        "split": split,
        "split_seed": preset.split_seed,
        "n_tasks": n_split_tasks(preset, split),
        "train_ns": list(spec.train_ns),
        "na": spec.na,
        "seq_len": spec.seq_len,
        "shard_size": spec.shard_size,
        "policy_weights": [float(w) for w in spec.policy_weights],
    }


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def shard_dir(root: Path, split: str, index: int) -> Path:
    return root / split / f"shard-{index:05d}"


def shard_range(preset: Preset, split: str, index: int) -> range:
    size = preset.data.shard_size
    return range(index * size, min((index + 1) * size, n_split_tasks(preset, split)))


def rebuild_command(preset: Preset, split: str, index: int, root: Path) -> str:
    command = (
        f"python -m bench data build --preset {preset.name} --split {split} --shard {index}/{n_shards(preset, split)}"
    )
    if root != data_root(preset):
        command += f" --root {root}"
    return command


# ---- synthesis of one shard ----


def synthesize_shard(preset: Preset, split: str, index: int) -> dict[str, np.ndarray]:
    """Every array of shard `index` of `split`: step fields (n, T) and META_FIELDS (n, ...)."""
    specs = sp.split_task_specs(preset, split, list(shard_range(preset, split, index)))
    tasks = sp.sample_tasks(specs)
    n, seq_len = len(tasks), preset.data.seq_len
    out = {name: np.empty((n, seq_len), dtype=dtype) for name, dtype in FIELDS.items()}
    j_opt, j_rand = np.empty(n), np.empty(n)
    for chunk in sub_batches([task.ns for task in tasks], preset.data.na):
        chunk_tasks = [tasks[i] for i in chunk]
        arrays = TaskArrays.stack(chunk_tasks)
        for name, values in synthesize(chunk_tasks, seq_len, label_policy(arrays), preset.data.policy_weights).items():
            out[name][chunk] = values
        j_opt[chunk], j_rand[chunk] = oracle_returns(arrays), random_returns(arrays)
    out["ns"] = np.array([task.ns for task in tasks], dtype=np.int16)
    out["seed"] = np.array([task.seed for task in tasks], dtype=np.int64)
    out["j_opt"], out["j_rand"] = j_opt, j_rand
    out["task_fp"] = np.array([np.frombuffer(bytes.fromhex(task.fingerprint()), np.uint8) for task in tasks])
    out["task_sums"] = np.array([list(task.array_sums().values()) for task in tasks])
    return out


def _write_shard(preset: Preset, split: str, index: int, root: Path) -> dict:
    folder = shard_dir(root, split, index)
    arrays = synthesize_shard(preset, split, index)
    files = {}
    for name, array in arrays.items():
        atomic_save_npy(folder / f"{name}.npy", array)
        files[name] = sha256_file(folder / f"{name}.npy")
    entry = {
        "index": index,
        "first": shard_range(preset, split, index).start,
        "n_seq": len(arrays["seed"]),
        "definition": _digest(definition(preset, split)),
        "task_digest": hashlib.sha256(arrays["task_fp"].tobytes()).hexdigest(),
        "files": files,
    }
    atomic_write_json(folder / "shard.json", entry)
    return entry


def read_shard_entry(preset: Preset, split: str, index: int, root: Path) -> dict | None:
    """The shard's entry if it is finished for this preset's definition, else None."""
    path = shard_dir(root, split, index) / "shard.json"
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry if entry.get("definition") == _digest(definition(preset, split)) else None


def shard_problem(preset: Preset, split: str, index: int, root: Path) -> str | None:
    """None if shard `index` is finished and intact, else what is wrong with it."""
    entry = read_shard_entry(preset, split, index, root)
    if entry is None:
        return "missing"
    folder = shard_dir(root, split, index)
    for name, digest in sorted(entry["files"].items()):
        path = folder / f"{name}.npy"
        if not path.is_file():
            return f"missing file {name}.npy"
        if sha256_file(path) != digest:
            return f"corrupt file {name}.npy (sha256 mismatch)"
    return None


def _check_root_definition(preset: Preset, split: str, root: Path) -> None:
    manifest = root / split / "manifest.json"
    if manifest.is_file():
        try:
            found = json.loads(manifest.read_text()).get("definition")
        except ValueError:
            return
        if found != definition(preset, split):
            raise BenchError(
                f"{manifest} holds data of another definition than preset {preset.name!r} ({found} != "
                f"{definition(preset, split)}); remove that folder or choose another --root"
            )


def write_manifest(preset: Preset, split: str, root: Path) -> dict | None:
    """Assemble `<split>/manifest.json` from the shard entries; None if a shard is unfinished."""
    entries = [read_shard_entry(preset, split, k, root) for k in range(n_shards(preset, split))]
    if any(entry is None for entry in entries):
        return None
    manifest = {
        "definition": definition(preset, split),
        "n_sequences": n_split_tasks(preset, split),
        "seq_len": preset.data.seq_len,
        "fields": {name: np.dtype(dtype).str for name, dtype in {**FIELDS, **META_FIELDS}.items()},
        "task_digest": hashlib.sha256("".join(e["task_digest"] for e in entries).encode()).hexdigest(),
        "shards": entries,
    }
    path = root / split / "manifest.json"
    if not path.is_file() or json.loads(path.read_text()) != manifest:
        atomic_write_json(path, manifest)
    return manifest


def _build_one(job: tuple[Preset, str, int, Path]) -> tuple[str, int, int]:
    preset, split, index, root = job
    entry = _write_shard(preset, split, index, root)
    return split, index, entry["n_seq"]


def build(
    preset: Preset,
    root: str | os.PathLike | None = None,
    splits: tuple[str, ...] = SPLITS,
    shard: tuple[int, int] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, dict | None]:
    """Build the missing or damaged shards of `splits` (only k, k + N, ... with `shard=(k, N)`).

    Returns each split's manifest, or None where shards are still missing (other `--shard` parts).
    """
    sp.check_data_spec(preset)
    root = data_root(preset, root)
    jobs = []
    for split in splits:
        _check_root_definition(preset, split, root)
        indices = range(n_shards(preset, split))
        if shard is not None:
            indices = indices[shard[0] :: shard[1]]
        for index in indices:
            if shard_problem(preset, split, index, root) is not None:
                jobs.append((preset, split, index, root))
    try:
        (root).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BenchError(f"cannot create data root {str(root)!r}: {err.strerror}") from None
    if not os.access(root, os.W_OK):
        raise BenchError(f"data root {str(root)!r} is not writable; choose another --root or set {DATA_ENV}")
    for _, split, index, _ in jobs:
        shutil.rmtree(shard_dir(root, split, index), ignore_errors=True)
    if jobs and progress and OLD_DATA.is_dir():
        print(f"note: {OLD_DATA} holds data of split/data version 1, no longer used; remove it to free the space")
    steps = sum(len(shard_range(preset, s, k)) for _, s, k, _ in jobs) * preset.data.seq_len
    workers = min(workers or os.cpu_count() or 1, max(len(jobs), 1))
    with tqdm(
        total=steps, unit="step", unit_scale=True, disable=not progress or not jobs, desc=f"data {preset.name}"
    ) as bar:
        if workers <= 1:
            for job in jobs:
                bar.update(_build_one(job)[2] * preset.data.seq_len)
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for _, _, n_seq in pool.map(_build_one, jobs):
                    bar.update(n_seq * preset.data.seq_len)
    manifests = {split: write_manifest(preset, split, root) for split in splits}
    if manifests.get("train") is not None:
        check_committed_train_digest(preset, manifests["train"])
    return manifests


# ---- committed manifests ----


def committed_dir(preset: Preset) -> Path:
    return MANIFEST_ROOT / preset.name


def committed_train(preset: Preset) -> dict | None:
    """The committed train digest of `preset`, if one exists for its current definition."""
    path = committed_dir(preset) / "train.json"
    if not path.is_file():
        return None
    committed = json.loads(path.read_text())
    return committed if committed.get("definition") == definition(preset, "train") else None


def committed_fingerprint(preset: Preset) -> str | None:
    """The dataset fingerprint recorded in the committed train manifest (None if none is recorded):
    every result file of `preset` must carry it."""
    committed = committed_train(preset)
    return None if committed is None else committed.get("dataset_fingerprint")


def check_committed_train_digest(preset: Preset, manifest: dict) -> None:
    committed = committed_train(preset)
    if committed is not None and committed["task_digest"] != manifest["task_digest"]:
        raise BenchError(
            f"train tasks of preset {preset.name!r} differ from the committed split "
            f"({committed_dir(preset) / 'train.json'}); "
            f"run `python -m bench data verify --preset {preset.name} --tasks`"
        )


def test_manifest(preset: Preset, workers: int = 1) -> dict:
    """The test split manifest: every test task's index, seed, ns, na and fingerprint."""
    tasks = sp.test_tasks(preset, workers)
    return {
        "format": FORMAT,
        "preset": preset.name,
        "split_seed": preset.split_seed,
        "test_ns": list(preset.data.test_ns),
        "test_tasks_per_ns": preset.data.test_tasks_per_ns,
        "tasks": [task_record(i, task) for i, task in enumerate(tasks)],
    }


def task_record(index: int, task: Task) -> dict:
    """A test task's entry in test.json: identity, fingerprint, and per array [sha256 prefix, sum]."""
    digests, sums = task.array_digests(), task.array_sums()
    return {
        "index": index, "seed": task.seed, "ns": task.ns, "na": task.na, "fingerprint": task.fingerprint(),
        "arrays": {name: [digests[name][:16], sums[name]] for name in ARRAYS},
    }  # fmt: skip


def write_committed_manifests(preset: Preset, root: str | os.PathLike | None = None, workers: int = 1) -> list[Path]:
    """Write test.json (and train.json when the train split is built) under committed_dir(preset)."""
    sp.check_data_spec(preset)
    folder = committed_dir(preset)
    written = [folder / "test.json"]
    atomic_write_json(written[0], test_manifest(preset, workers))
    manifests = {split: write_manifest(preset, split, data_root(preset, root)) for split in SPLITS}
    manifest = manifests["train"]
    if manifest is not None:
        shards = [{"index": e["index"], "task_digest": e["task_digest"]} for e in manifest["shards"]]
        train = {"definition": manifest["definition"], "task_digest": manifest["task_digest"], "shards": shards}
        if manifests["valid"] is not None:
            train["dataset_fingerprint"] = dataset_fingerprint(manifests)
        written.append(folder / "train.json")
        atomic_write_json(written[1], train)
    return written


# ---- verification ----


def verify_shards(preset: Preset, root: str | os.PathLike | None = None) -> list[str]:
    """One line per missing or corrupt shard, naming the command that rebuilds it."""
    sp.check_data_spec(preset)
    root = data_root(preset, root)
    problems = []
    for split in SPLITS:
        for index in range(n_shards(preset, split)):
            problem = shard_problem(preset, split, index, root)
            if problem is not None:
                problems.append(
                    f"{split} shard {index} ({shard_dir(root, split, index)}): {problem}; "
                    f"rebuild: {rebuild_command(preset, split, index, root)}"
                )
        if not problems:
            write_manifest(preset, split, root)
    return problems


def explain_drift(where: str, task: Task, fingerprint: str, arrays: dict[str, tuple[str | None, float]]) -> str | None:
    """None if `task` has the recorded `fingerprint`, else one line saying which arrays differ, by
    how much, and what that suggests. `arrays` maps each name of ARRAYS to (sha256 prefix or None, sum)."""
    found = task.fingerprint()
    if found == fingerprint:
        return None
    digests, sums = task.array_digests(), task.array_sums()
    parts, worst = [], 0.0
    for name in ARRAYS:
        digest, recorded = arrays[name]
        if (digest is not None and digests[name].startswith(digest)) or (digest is None and sums[name] == recorded):
            continue
        change = abs(sums[name] - recorded)
        relative = change / max(abs(recorded), 1.0)
        worst = max(worst, relative)
        if change == 0:
            parts.append(f"{name} (same sum: entries moved, or differences that cancel)")
        else:
            parts.append(
                f"{name} (sum {sums[name]!r}, recorded {recorded!r}: off by {change:.1e}, relative {relative:.1e})"
            )
    if not parts:
        what = "no array's sum moved: the difference is below what the sums resolve"
    else:
        what = "differs in " + "; ".join(parts)
    if worst <= ROUNDING_LEVEL:
        cause = ("a rounding-level difference: this machine computes the generator's arithmetic differently "
                 "(please report it with your CPU, OS and NumPy version)")  # fmt: skip
    else:
        cause = (
            "a different task: the generator differs from the one that wrote the record (another benchmark version?)"
        )
    return f"{where} drifted: fingerprint {found[:12]}..., recorded {fingerprint[:12]}...; {what}. Likely {cause}"


def verify_tasks(
    preset: Preset, root: str | os.PathLike | None = None, workers: int = 1, progress: bool = True
) -> tuple[int, list[str]]:
    """Regenerate every recorded task: (tasks checked, one line per drifted task, `explain_drift`).

    Checks the test tasks against the committed test.json, and train/valid tasks against the
    fingerprints and array sums stored in built shards.
    """
    sp.check_data_spec(preset)
    root = data_root(preset, root)
    checked, problems = 0, []
    test_path = committed_dir(preset) / "test.json"
    with sp.task_sampler(workers) as sample:
        if test_path.is_file():
            recorded = json.loads(test_path.read_text())["tasks"]
            tasks = sample([(r["ns"], r["na"], r["seed"]) for r in recorded])
            for record, task in zip(recorded, tasks):
                where = f"test task {record['index']} (ns {record['ns']}, seed {record['seed']})"
                problems.append(explain_drift(where, task, record["fingerprint"], record["arrays"]))
            checked += len(tasks)
        for split in SPLITS:
            for index in tqdm(range(n_shards(preset, split)), desc=f"verify {split} tasks", disable=not progress):
                if read_shard_entry(preset, split, index, root) is None:
                    continue
                folder = shard_dir(root, split, index)
                fingerprints, sums = np.load(folder / "task_fp.npy"), np.load(folder / "task_sums.npy")
                indices = shard_range(preset, split, index)
                specs = sp.split_task_specs(preset, split, list(indices))
                for i, task, (ns, _, seed), fp, row in zip(indices, sample(specs), specs, fingerprints, sums):
                    arrays = {name: (None, float(total)) for name, total in zip(ARRAYS, row)}
                    problems.append(
                        explain_drift(f"{split} task {i} (ns {ns}, seed {seed})", task, fp.tobytes().hex(), arrays)
                    )
                checked += len(specs)
    return checked, [line for line in problems if line is not None]


# ---- the entry point for training ----


@dataclass(frozen=True)
class DataInfo:
    """A built, verified dataset of one preset."""

    preset: str
    """Preset name."""
    root: Path
    """Folder holding the train/ and valid/ splits (pass it to `ShardedSequences`)."""
    fingerprint: str
    """sha256 over the train and valid manifests (every shard's file checksums): the dataset identity."""
    n_sequences: int
    """Training sequences."""
    n_valid: int
    """Held-out sequences (split "valid")."""
    seq_len: int
    """Steps per sequence."""


def dataset_fingerprint(manifests: dict[str, dict]) -> str:
    return _digest({split: manifests[split] for split in SPLITS})


def ensure_data(
    preset: Preset, root: str | os.PathLike | None = None, progress: bool = True, workers: int | None = None
) -> DataInfo:
    """Build the train and valid shards of `preset` if missing, verify checksums, describe the data.

    `workers`: build processes (default: all cores). Under torchrun, rank 0 builds and verifies,
    then the other ranks check that every shard is present where *they* look (node-local disks)
    and that their data is rank 0's; any problem is one BenchError on every rank."""
    rank, world_size = distributed.dist_info()
    if world_size == 1:
        return _build_and_verify(preset, root, progress, workers)
    info = distributed.collective(
        "the data build on rank 0", lambda: _build_and_verify(preset, root, progress, workers) if rank == 0 else None
    )
    info = distributed.collective("the data check", lambda: info if rank == 0 else present_data(preset, root))
    fingerprints = distributed.all_gather_objects(info.fingerprint, "the data fingerprint check")
    differing = [r for r, fp in enumerate(fingerprints) if fp != fingerprints[0]]
    if differing:
        raise BenchError(
            f"ranks {differing} see other data than rank 0 (dataset fingerprint {fingerprints[differing[0]][:12]} != "
            f"{fingerprints[0][:12]}); give every node the same build"
        )
    return info


def _build_and_verify(preset: Preset, root: str | os.PathLike | None, progress: bool, workers: int | None) -> DataInfo:
    manifests = build(preset, root, workers=workers, progress=progress)
    path = data_root(preset, root)
    fingerprint, expected = dataset_fingerprint(manifests), committed_fingerprint(preset)
    if expected is not None and fingerprint != expected:
        raise BenchError(
            f"the {preset.name!r} data in {path} has fingerprint {fingerprint[:12]}..., not the committed "
            f"{expected[:12]}...; run `python -m bench data verify --preset {preset.name} --tasks` to find what drifted"
        )
    return _describe(preset, path, manifests)


def present_data(preset: Preset, root: str | os.PathLike | None = None) -> DataInfo:
    """DataInfo of a build from its manifests, after checking that every shard's files exist (no
    hashing: under torchrun rank 0 has verified the checksums, compared through the fingerprint)."""
    path = data_root(preset, root)
    manifests = {}
    for split in SPLITS:
        for index in range(n_shards(preset, split)):
            entry = read_shard_entry(preset, split, index, path)
            if entry is None or any(
                not (shard_dir(path, split, index) / f"{name}.npy").is_file() for name in entry["files"]
            ):
                raise BenchError(
                    f"{split} shard {index} is missing at {shard_dir(path, split, index)}; every node needs the "
                    f"whole build: {rebuild_command(preset, split, index, path)}"
                )
        manifest_path = path / split / "manifest.json"
        try:
            manifests[split] = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            raise BenchError(
                f"{manifest_path} is missing or unreadable; "
                f"run `python -m bench data verify --preset {preset.name}` there"
            ) from None
    return _describe(preset, path, manifests)


def _describe(preset: Preset, path: Path, manifests: dict[str, dict]) -> DataInfo:
    return DataInfo(
        preset=preset.name,
        root=path,
        fingerprint=dataset_fingerprint(manifests),
        n_sequences=manifests["train"]["n_sequences"],
        n_valid=manifests["valid"]["n_sequences"],
        seq_len=preset.data.seq_len,
    )
