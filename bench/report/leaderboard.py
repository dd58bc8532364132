"""`python -m bench leaderboard`: regenerate `leaderboard.md` from `results/**/seed*.json`.

Deterministic: the same result files give the same bytes (fixed bootstrap seed, sorted inputs,
no timestamps). Every file goes through `bench.report.validate`; refused files are listed with the
reason. Intervals are 95 % percentile intervals of a two-level bootstrap: seeds are resampled,
then the (shared) test tasks.
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import metrics
from bench.errors import BenchError
from bench.io import atomic_write
from bench.presets import DEFAULT_PRESET, PRESETS, RANKED
from bench.report.frame import results_frame
from bench.report.results import iter_results
from bench.report.validate import agent_episodes, validate_file

BOOTSTRAP_SEED = 0
BOOTSTRAP_SAMPLES = 1000
BASELINES = ("oracle", "random", "tql_ucb")
BASELINE_LABELS = {"oracle": "oracle (finite-horizon optimum)", "random": "uniform random", "tql_ucb": "TQL-UCB"}
PLOTS = ("d_curves", "action_loss", "asymptotic_vs_few_shot")


@dataclass(frozen=True)
class Score:
    mean: float
    lo: float
    hi: float

    def cell(self) -> str:
        if np.isnan(self.mean):
            return "—"
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


@dataclass(frozen=True)
class Row:
    name: str
    asymptotic: Score
    few_shot: Score
    steps_to_80: str
    params: str = "—"
    state_size: str = "—"
    action_ce_long: str = "—"
    tokens_per_s: str = "—"
    peak_memory: str = "—"
    seeds: int = 0


def agent_task_arrays(doc: dict, agent: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Curve window starts (W,), per-task mean score per curve window (N, W), and per-task few-shot
    score (N,) of one agent in one result: the quantities its summaries average over tasks."""
    ep, tasks = agent_episodes(doc, agent)
    scores = metrics.episode_scores(ep, tasks["j_rand"], tasks["j_opt"])
    edges = metrics.curve_edges(ep.steps)
    k = PRESETS[doc["preset"]].recipe.few_shot_episodes
    return edges[:-1], metrics.task_means(ep, scores, edges), metrics.task_few_shot(ep, scores, k)


def _nanmean_rows(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Weighted NaN-ignoring means over the first axis of `values`: (S, N) @ (N, ...) -> (S, ...)."""
    valid = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ np.where(valid, values, 0.0)) / (weights @ valid)


def _seed_task_bootstrap(docs: list[dict], agent: str, rng: np.random.Generator) -> tuple[Score, Score]:
    """Asymptotic (max of the smoothed mean curve) and few-shot scores: the mean over seeds, and a
    bootstrap interval resampling seeds, then tasks (the same test tasks in every seed)."""
    arrays = [agent_task_arrays(doc, agent) for doc in docs]
    n_tasks = arrays[0][1].shape[0]
    if any(windows.shape[0] != n_tasks for _, windows, _ in arrays):
        raise BenchError(f"results of {docs[0]['arch']!r} score different numbers of test tasks")
    weights = metrics.bootstrap_weights(n_tasks, BOOTSTRAP_SAMPLES, int(rng.integers(2**31)))
    seed_draws = rng.integers(0, len(docs), size=(BOOTSTRAP_SAMPLES, len(docs)))

    def asymptotic(means: np.ndarray) -> np.ndarray:
        return np.array([np.nanmax(metrics.smooth(row, metrics.SMOOTHING_POINTS)) for row in means])

    ones = np.ones((1, n_tasks))
    point_asym = np.array([asymptotic(_nanmean_rows(ones, windows))[0] for _, windows, _ in arrays])
    draws_asym = np.stack([asymptotic(_nanmean_rows(weights, windows)) for _, windows, _ in arrays], axis=1)
    point_few = np.array([_nanmean_rows(ones, few)[0] for _, _, few in arrays])
    draws_few = np.stack([_nanmean_rows(weights, few) for _, _, few in arrays], axis=1)
    rows = np.arange(BOOTSTRAP_SAMPLES)[:, None]
    asym_samples = draws_asym[rows, seed_draws].mean(1)
    few_samples = np.nanmean(draws_few[rows, seed_draws], axis=1)
    return _score(point_asym, asym_samples), _score(point_few, few_samples)


def _score(per_seed: np.ndarray, samples: np.ndarray) -> Score:
    if np.all(np.isnan(per_seed)):
        return Score(float("nan"), float("nan"), float("nan"))
    lo, hi = np.nanpercentile(samples, [2.5, 97.5])
    return Score(float(np.nanmean(per_seed)), float(lo), float(hi))


def _steps_to_80(docs: list[dict], agent: str) -> str:
    reached = [doc["interactive"]["agents"][agent]["overall"]["steps_to_80"] for doc in docs]
    hits = [s for s in reached if s is not None]
    if not hits:
        return "never"
    cell = f"{np.mean(hits):.0f}"
    return cell if len(hits) == len(reached) else f"{cell} ({len(hits)}/{len(reached)} seeds)"


def _long_context_ce(docs: list[dict]) -> str:
    edges = docs[0]["offline"]["bin_edges"]
    values = [doc["offline"]["action_ce"][-1] for doc in docs]
    return f"{np.mean(values):.3f} (t ∈ [{edges[-2]}, {edges[-1]}))"


def _peak_memory(docs: list[dict]) -> str:
    values = [doc["manifest"]["peak_memory_bytes"] for doc in docs]
    if any(v is None for v in values):
        return "— (CPU)"  # CPU results written before CPU runs recorded their peak RSS
    on_cpu = any(doc["manifest"]["device"] == "cpu" for doc in docs)
    return f"{max(values) / 2**20:.0f} MiB{' RSS' if on_cpu else ''}"


def arch_row(name: str, docs: list[dict], rng: np.random.Generator) -> Row:
    asym, few = _seed_task_bootstrap(docs, "model", rng)
    manifest = docs[0]["manifest"]
    return Row(
        name=name,
        asymptotic=asym,
        few_shot=few,
        steps_to_80=_steps_to_80(docs, "model"),
        params=f"{manifest['param_count']['backbone'] / 1e3:.0f}K",
        state_size=f"{manifest['state_size']:,}",
        action_ce_long=_long_context_ce(docs),
        tokens_per_s=f"{np.mean([d['manifest']['train_tokens_per_s'] for d in docs]):,.0f}",
        peak_memory=_peak_memory(docs),
        seeds=len(docs),
    )


def baseline_rows(docs: list[dict], rng: np.random.Generator) -> list[Row]:
    """Baselines are scored on the same tasks in every result; one result per seed is used."""
    by_seed = {doc["seed"]: doc for doc in sorted(docs, key=lambda d: (d["seed"], d["arch"]))}
    unique = [by_seed[s] for s in sorted(by_seed)]
    rows = []
    for agent in BASELINES:
        asym, few = _seed_task_bootstrap(unique, agent, rng)
        rows.append(Row(BASELINE_LABELS[agent], asym, few, _steps_to_80(unique, agent), seeds=len(unique)))
    return rows


def _tied(a: Score, b: Score) -> bool:
    """Neither mean is separable from the other's 95 % interval."""
    return a.lo <= b.mean <= a.hi or b.lo <= a.mean <= b.hi


def rank_labels(rows: list[Row]) -> list[str]:
    """1, 2, ... in order of the asymptotic score; "=k" marks rows tied with a neighbour."""
    tied_prev = [i > 0 and _tied(rows[i - 1].asymptotic, row.asymptotic) for i, row in enumerate(rows)]
    labels, rank = [], 0
    for i in range(len(rows)):
        if not tied_prev[i]:
            rank = i + 1
        tied = tied_prev[i] or (i + 1 < len(rows) and tied_prev[i + 1])
        labels.append(f"={rank}" if tied else str(rank))
    return labels


HEADER = (
    "| rank | architecture | params | state size | asymptotic score | few-shot score | steps to 80 % "
    "| action CE, long context | train tokens/s | peak memory | seeds |"
)


def preset_table(preset: str, docs: list[dict]) -> str:
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    by_arch: dict[str, list[dict]] = defaultdict(list)
    for doc in docs:
        by_arch[doc["arch"]].append(doc)
    rows = [arch_row(arch, sorted(group, key=lambda d: d["seed"]), rng) for arch, group in sorted(by_arch.items())]
    rows.sort(key=lambda r: (-np.nan_to_num(r.asymptotic.mean, nan=-np.inf), r.name))
    lines = [HEADER, "|" + " --- |" * 11]
    for label, row in zip(rank_labels(rows), rows):
        lines.append(
            f"| {label} | `{row.name}` | {row.params} | {row.state_size} | {row.asymptotic.cell()} | "
            f"{row.few_shot.cell()} | {row.steps_to_80} | {row.action_ce_long} | {row.tokens_per_s} | "
            f"{row.peak_memory} | {row.seeds} |"
        )
    for row in baseline_rows(docs, rng):
        lines.append(
            f"| — | *{row.name}* | — | — | {row.asymptotic.cell()} | {row.few_shot.cell()} | {row.steps_to_80} "
            f"| — | — | — | {row.seeds} |"
        )
    return "\n".join(lines)


def ood_table(docs: list[dict]) -> str | None:
    """The OOD track of one preset: per architecture (and baseline) and Table 1 task, the last-quarter
    mean normalised score, averaged over the seeds whose results hold the OOD section (schema 2)."""
    frame = results_frame(docs)
    frame = frame[(frame.suite == "ood") & (frame.group == "overall") & (frame.metric == "last_quarter")]
    if frame.empty:
        return None
    tasks = list(dict.fromkeys(frame.task))
    model = frame[frame.agent == "model"]
    # baselines: one result per seed (every result of a seed rolls them out on the same tasks)
    baselines = frame[frame.agent != "model"].drop_duplicates(["seed", "agent", "task"])
    rows = [(f"`{arch}`", group) for arch, group in model.groupby("arch", sort=True)]
    rows += [(f"*{BASELINE_LABELS[a]}*", baselines[baselines.agent == a]) for a in BASELINES]
    lines = ["| architecture | seeds | " + " | ".join(tasks) + " |", "|" + " --- |" * (len(tasks) + 2)]
    for label, group in rows:
        means = group.groupby("task").value.mean()
        cells = " | ".join(f"{means[t]:.3f}" if t in means else "—" for t in tasks)
        lines.append(f"| {label} | {group.seed.nunique()} | {cells} |")
    skipped = next(doc["ood"]["not_applicable"] for doc in docs if doc.get("ood", {}).get("by_task"))
    if skipped:
        lines += ["", "Not applicable at this preset: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + "."]
    return "\n".join(lines)


def collect(roots: Path | Sequence[Path]) -> tuple[dict[str, list[dict]], list[tuple[Path, str]]]:
    """Valid results of the ranked presets under `roots` by preset, and (path, reason) for every
    refused file (invalid, not ranked, or the same run found twice)."""
    accepted: dict[str, list[dict]] = defaultdict(list)
    refused: list[tuple[Path, str]] = []
    seen: dict[tuple[str, str, int], Path] = {}
    for path in [p for root in ([roots] if isinstance(roots, Path) else roots) for p in iter_results(root)]:
        doc, reasons = validate_file(path)  # a file must lie at its own place, so no run counts twice
        reasons = reasons or unranked(doc)
        key = (doc["preset"], doc["arch"], doc["seed"]) if not reasons else None
        if key in seen:
            reasons = [f"the same preset, arch and seed as {seen[key]}"]
        if reasons:
            refused.append((path, reasons[0]))
        else:
            seen[key] = path
            accepted[doc["preset"]].append(doc)
    return accepted, refused


def unranked(doc: dict) -> list[str]:
    """Why a valid result is not ranked: its preset is outside RANKED (smoke)."""
    if doc["preset"] not in RANKED:
        return [f"preset {doc['preset']!r} is never ranked (ranked: {', '.join(RANKED)})"]
    return []


def render(
    accepted: dict[str, list[dict]], refused: list[tuple[Path, str]], figures: dict[str, list[str]] | None = None
) -> str:
    """The leaderboard's Markdown; `figures` maps a preset to figure links (relative to the file)."""
    out = [
        "# Leaderboard",
        "",
        "Generated by `python -m bench leaderboard` from the result files under `results/`; do not edit by hand.",
        "Scores are normalised returns on unseen AnyMDP test tasks, `(R - J_rand) / (J_opt - J_rand)`:",
        "the oracle (exact finite-horizon optimum) scores 1 and the uniform-random policy 0.",
        "**Asymptotic score**: the maximum of the smoothed mean curve d_t; **few-shot score**: the mean over the",
        "first K episodes (docs/recipe.md). Intervals: 95 %, bootstrap over seeds and test tasks. Rank `=k`: not",
        "separable from a neighbour at 95 %. Every row passed `python -m bench validate`.",
    ]
    for preset in sorted(accepted, key=lambda p: list(PRESETS).index(p)):
        docs = accepted[preset]
        out += ["", f"## Preset `{preset}`", "", preset_table(preset, docs)]
        ood = ood_table(docs)
        if ood is not None:
            out += [
                "",
                f"### Out of distribution: the paper's Table 1 tasks (`{preset}`)",
                "",
                "Last-quarter mean normalised score per task (mean over seeds; docs/ood.md defines the tasks).",
                "",
                ood,
            ]
        links = (figures or {}).get(preset, [])
        out += [""] + [f"![{Path(link).stem}]({link})" for link in links] if links else []
    if not accepted:
        out += ["", "No valid result files yet: run `python -m bench run --arch gdn`."]
    if refused:
        out += ["", "## Refused result files", "", "| file | reason |", "| --- | --- |"]
        out += [f"| `{path.as_posix()}` | {reason.replace('|', '/')} |" for path, reason in refused]
    return "\n".join(out) + "\n"


def figure_links(plots_dir: Path, base: Path, accepted: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Per preset, links (relative to `base`) to the figures of `bench.report.plot` that exist."""
    links = {}
    for preset in accepted:
        names = [f"{preset}_{name}.png" for name in PLOTS] + (["scaling.png"] if preset == DEFAULT_PRESET else [])
        links[preset] = [
            Path(os.path.relpath(plots_dir / name, base)).as_posix() for name in names if (plots_dir / name).exists()
        ]
    return links


def write_leaderboard(
    root: str | Path = "results", out: str | Path = "leaderboard.md"
) -> tuple[Path, dict[str, list[dict]], list[tuple[Path, str]]]:
    """Validate every result under `root` and write the leaderboard; returns (path, accepted, refused)."""
    root, out = Path(root), Path(out)
    accepted, refused = collect(root)
    atomic_write(out, render(accepted, refused, figure_links(root / "plots", out.parent, accepted)).encode())
    return out, accepted, refused


def add_results_argument(parser: argparse.ArgumentParser) -> None:
    """`--results DIR`, repeatable (read by `result_roots`)."""
    parser.add_argument(
        "--results",
        type=Path,
        action="append",
        default=None,
        help="folder of result files; repeat to read several together, e.g. --results results --results mine "
        "(default results)",
    )


def result_roots(args: argparse.Namespace) -> list[Path]:
    """The folders of `--results` (default results/), or a BenchError naming one that does not exist."""
    roots = args.results or [Path("results")]
    missing = [str(root) for root in roots if not root.is_dir()]
    if missing:
        raise BenchError(f"--results {missing[0]}: no such folder")
    return roots


def configure(parser: argparse.ArgumentParser) -> None:
    add_results_argument(parser)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=Path("leaderboard.md"), help="Markdown file to write")
    where.add_argument("--stdout", action="store_true", help="print the Markdown instead of writing a file")


def main(args: argparse.Namespace) -> int:
    roots = result_roots(args)
    if args.stdout:
        accepted, refused = collect(roots)
        print(render(accepted, refused), end="")
        return 0
    if len(roots) > 1:
        raise BenchError("several --results folders: print the combined leaderboard with --stdout")
    path, accepted, refused = write_leaderboard(roots[0], args.out)
    print(f"wrote {path}: {sum(len(v) for v in accepted.values())} result files, {len(refused)} refused")
    for file, reason in refused:
        print(f"  refused {file}: {reason}")
    return 0
