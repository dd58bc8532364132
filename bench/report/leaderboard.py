"""`python -m bench leaderboard`: regenerate `leaderboard.md` from `results/**/seed*.json`.

Deterministic: the same result files give the same bytes (fixed bootstrap seed, sorted inputs,
no timestamps). Every file goes through `bench.report.validate`; refused files are listed with the
reason. Scores: task-balanced anchored scores (bench.metrics); intervals: 95 % percentile intervals
of a two-level bootstrap (seeds, then test tasks within each ns group); IQM, probability of
improvement and the paired tests behind the ranks: bench.report.stats (docs/statistics.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import metrics
from bench.errors import BenchError
from bench.io import atomic_write
from bench.presets import DEFAULT_PRESET, PRESETS, RANKED
from bench.report import stats
from bench.report.frame import results_frame
from bench.report.results import iter_results
from bench.report.scores import Estimate, RunScores, balanced_estimate, balanced_mean, run_scores
from bench.report.validate import validate_file

BOOTSTRAP_SEED = 0
BOOTSTRAP_REPS = 2000
REQUIRED_SEEDS = 3
"""Training seeds an architecture needs at a preset to be ranked; rows with fewer are shown apart."""
RANK_METRIC = "iqm"
"""The aggregate of the final scores that orders the ranked rows and that their tests compare: rliable's
interquartile mean of the run x task scores (docs/statistics.md, "Which aggregate ranks"). The
tests of the mean final score are shown beside it."""
BASELINES = ("oracle", "random", "tql_ucb")
BASELINE_LABELS = {"oracle": "oracle (finite-horizon optimum)", "random": "uniform random", "tql_ucb": "TQL-UCB"}
PLOTS = ("curves", "profile", "poi", "offline_loss")


@dataclass(frozen=True)
class Row:
    name: str
    scores: RunScores
    seeds: int
    final: Estimate
    iqm: Estimate
    auc: Estimate
    gain: Estimate
    reach: str
    paper_max: str
    params: str = "—"
    state_size: str = "—"
    action_ce_long: str = "—"
    tokens_per_s: str = "—"
    peak_memory: str = "—"


def _rng(*names: str) -> np.random.Generator:
    """A bootstrap stream of its own per row and quantity: adding a row changes no other interval."""
    return np.random.default_rng([BOOTSTRAP_SEED, *(zlib.crc32(name.encode()) for name in names)])


def _iqm(name: str, final: np.ndarray) -> Estimate:
    (kept,) = stats.finite_tasks(final)
    found = stats.seed_t_interval(kept, "iqm", BOOTSTRAP_REPS, _rng(name, "iqm"))
    return Estimate(found.point, found.lo, found.hi)


def _reach(scores: RunScores, steps: int) -> str:
    reach = np.stack([metrics.steps_to_threshold(c, scores.anchors, steps) for c in scores.curves])  # (R, N)
    fraction = balanced_mean((~np.isnan(reach)).astype(np.float64), scores.groups).mean()
    reached = reach[~np.isnan(reach)]
    return f"{fraction:.2f}" + (f" ({np.median(reached):.0f})" if reached.size else "")


def _paper_max(scores: RunScores) -> str:
    curve = balanced_mean(np.moveaxis(metrics.nanmean(scores.curves, axis=0), 0, -1), scores.groups)  # (K,)
    return f"{np.nanmax(metrics.smooth(curve, metrics.SMOOTHING_POINTS)):.3f}"


def score_row(name: str, docs: list[dict], agent: str) -> Row:
    """A row's scores: `agent` in every document (one run each)."""
    scores = run_scores(docs, agent)
    steps = docs[0]["interactive"]["eval_steps"]
    estimate = {
        kind: balanced_estimate(scores.values[kind], scores.groups, BOOTSTRAP_REPS, _rng(name, kind))
        for kind in ("final", "auc", "gain")
    }
    return Row(
        name=name,
        scores=scores,
        seeds=len(docs),
        final=estimate["final"],
        iqm=_iqm(name, scores.values["final"]),
        auc=estimate["auc"],
        gain=estimate["gain"],
        reach=_reach(scores, steps),
        paper_max=_paper_max(scores),
    )


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


def arch_row(name: str, docs: list[dict]) -> Row:
    manifest = docs[0]["manifest"]
    return dataclasses.replace(
        score_row(name, docs, "model"),
        params=f"{manifest['param_count']['backbone'] / 1e3:.0f}K",
        state_size=f"{manifest['state_size']:,}",
        action_ce_long=_long_context_ce(docs),
        tokens_per_s=f"{np.mean([d['manifest']['train_tokens_per_s'] for d in docs]):,.0f}",
        peak_memory=_peak_memory(docs),
    )


def baseline_rows(docs: list[dict]) -> list[Row]:
    """The baselines of the preset: every result rolls them out on the same tasks with the same
    rollout seed, so one result (the first) holds them."""
    first = min(docs, key=lambda d: (d["arch"], d["seed"]))
    return [score_row(BASELINE_LABELS[agent], [first], agent) for agent in BASELINES]


@dataclass(frozen=True)
class Ranking:
    """Ranked rows (by the RANK_METRIC of the final score) with the tests behind the ranks."""

    rows: list[Row]
    adjacent: list[stats.Comparison]
    """rows[i] vs rows[i + 1] on RANK_METRIC, Holm-corrected over the adjacent pairs."""
    adjacent_mean: list[stats.Comparison]
    """The same pairs on the mean final score, Holm-corrected over the adjacent pairs."""
    vs_random: list[stats.Comparison]
    """Each row vs uniform random on RANK_METRIC, Holm-corrected over the rows."""


def _finals(rows: list[Row]) -> dict[str, np.ndarray]:
    """Each row's run x task final scores, on the tasks finite in every row."""
    return dict(zip([r.name for r in rows], stats.finite_tasks(*[r.scores.values["final"] for r in rows])))


def rank(rows: list[Row], random: Row) -> Ranking:
    rows = sorted(rows, key=lambda r: (-np.nan_to_num(r.iqm.point, nan=-np.inf), r.name))
    finals = _finals([*rows, random])

    def tests(pairs: list[tuple[str, str]], metric: str) -> list[stats.Comparison]:
        return stats.pairwise_tests(finals, BOOTSTRAP_REPS, BOOTSTRAP_SEED, pairs=pairs, metric=metric) if pairs else []

    pairs = [(a.name, b.name) for a, b in zip(rows, rows[1:])]
    versus = [(r.name, random.name) for r in rows]
    return Ranking(rows, tests(pairs, RANK_METRIC), tests(pairs, "mean"), tests(versus, RANK_METRIC))


def rank_labels(ranking: Ranking) -> list[str]:
    """1, 2, ... by the IQM of the final score; a row not significantly below its predecessor shares its rank, "=k"."""
    labels, rank_at = [], 1
    tied = [False] + [not c.significant for c in ranking.adjacent]
    for i in range(len(ranking.rows)):
        if not tied[i]:
            rank_at = i + 1
        shares = tied[i] or (i + 1 < len(tied) and tied[i + 1])
        labels.append(f"={rank_at}" if shares else str(rank_at))
    return labels


COLUMNS = (
    "IQM of final (ranks)",
    "final score (mean)",
    "AUC",
    "in-context gain",
    "reach 0.5 (median steps)",
    "paper-style max (biased ↑)",
)


def _score_cells(row: Row) -> str:
    return " | ".join([row.iqm.cell(), row.final.cell(), row.auc.cell(), row.gain.cell(), row.reach, row.paper_max])


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _vs_random_cell(test: stats.Comparison, runs_above: str) -> str:
    sign = ">" if test.test.difference > 0 else "<"
    verdict = f"{sign} random" if test.significant else "≈ random"
    return f"{verdict} (p {_p(test.p_holm)}); runs > random: {runs_above}"


def runs_above_random(row: Row, random: Row) -> str:
    """ "k/R": how many of the row's runs (trained models) beat uniform random on their own: each run
    against random, tested over the tasks (`paired_test` of two single runs), Holm over the runs."""
    final, baseline = stats.finite_tasks(row.scores.values["final"], random.scores.values["final"])
    runs = {f"run{i}": final[i : i + 1] for i in range(final.shape[0])}
    tests = stats.pairwise_tests(
        {**runs, "random": baseline},
        BOOTSTRAP_REPS,
        BOOTSTRAP_SEED,
        pairs=[(n, "random") for n in runs],
        metric=RANK_METRIC,
    )
    return f"{sum(c.significant and c.test.difference > 0 for c in tests)}/{len(tests)}"


def preset_table(docs: list[dict]) -> tuple[str, list[str]]:
    """The preset's tables (ranked, provisional, baselines) and its significance statements."""
    by_arch: dict[str, list[dict]] = defaultdict(list)
    for doc in docs:
        by_arch[doc["arch"]].append(doc)
    rows = [arch_row(arch, sorted(group, key=lambda d: d["seed"])) for arch, group in sorted(by_arch.items())]
    baselines = baseline_rows(docs)
    random = baselines[BASELINES.index("random")]
    ranked = rank([r for r in rows if r.seeds >= REQUIRED_SEEDS], random)
    provisional = rank([r for r in rows if r.seeds < REQUIRED_SEEDS], random)
    head = "| rank | architecture | seeds | " + " | ".join(COLUMNS)
    head += " | vs random (Holm) | action CE, long context | params | state size | train tokens/s | peak memory |"
    lines = [head, "|" + " --- |" * (len(COLUMNS) + 9)]
    for label, row, test in zip(rank_labels(ranked), ranked.rows, ranked.vs_random):
        lines.append(
            f"| {label} | `{row.name}` | {row.seeds} | {_score_cells(row)} | "
            f"{_vs_random_cell(test, runs_above_random(row, random))} | "
            f"{row.action_ce_long} | {row.params} | {row.state_size} | {row.tokens_per_s} | {row.peak_memory} |"
        )
    for row in baselines:
        lines.append(f"| — | *{row.name}* | — | {_score_cells(row)} | — | — | — | — | — | — |")
    out = ["\n".join(lines)]
    if provisional.rows:
        lines = [
            f"Provisional: fewer than {REQUIRED_SEEDS} seeds, **not ranked** (same columns).",
            "",
            "| architecture | seeds | " + " | ".join(COLUMNS) + " | vs random (Holm) |",
            "|" + " --- |" * (len(COLUMNS) + 3),
        ]
        for row, test in zip(provisional.rows, provisional.vs_random):
            cell = _vs_random_cell(test, runs_above_random(row, random))
            lines.append(f"| `{row.name}` | {row.seeds} | {_score_cells(row)} | {cell} |")
        out.append("\n".join(lines))
    statements = [_statement(c, m) for c, m in zip(ranked.adjacent, ranked.adjacent_mean)]
    if len(ranked.rows) > 1:
        out.append(probability_table(ranked.rows))
    return "\n\n".join(out), statements


def _statement(c: stats.Comparison, mean: stats.Comparison) -> str:
    """The pair's verdict on the IQM, with the same pair's test of the mean final score."""
    verdict = f"`{c.a}` > `{c.b}`" if c.significant else f"`{c.a}` and `{c.b}` are not separable"
    t, m = c.test, mean.test
    return (
        f"- {verdict}: IQM difference {t.difference:+.3f} [{t.lo:+.3f}, {t.hi:+.3f}], "
        f"p {_p(t.p_value)}, Holm-adjusted {_p(c.p_holm)}. Mean final score: difference "
        f"{m.difference:+.3f} [{m.lo:+.3f}, {m.hi:+.3f}], p {_p(m.p_value)}, Holm-adjusted {_p(mean.p_holm)} "
        f"({'separable' if mean.significant else 'not separable'} on the mean)"
    )


def probability_table(rows: list[Row]) -> str:
    """P(row's final score > column's) per task, averaged over tasks (rliable's probability of improvement)."""
    finals = _finals(rows)
    names = list(finals)
    lines = ["P(row > column), final score", "", "| | " + " | ".join(f"`{n}`" for n in names) + " |"]
    lines.append("|" + " --- |" * (len(names) + 1))
    for a in names:
        cells = ["—" if a == b else f"{stats.probability_of_improvement(finals[a], finals[b]):.2f}" for b in names]
        lines.append(f"| `{a}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ood_table(docs: list[dict]) -> str | None:
    """The OOD track of one preset: per architecture (and baseline) and Table 1 task, the final
    score, averaged over the seeds."""
    frame = results_frame(docs)
    frame = frame[(frame.suite == "ood") & (frame.group == "overall") & (frame.metric == "final")]
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
        "the oracle (exact finite-horizon optimum) scores 1 and the uniform-random policy 0. At 64 anchors per",
        "rollout each task contributes the first episode starting at or after the anchor (unbiased for a fixed",
        "policy), averaged over the run's rollouts of the task (8 by default; `bench eval --rollouts`); tasks are",
        "averaged within ns groups, and groups weigh the same.",
        "**Final score**: the last quarter of the rollout; **IQM of final** (ranks): the interquartile mean of",
        "the run x task final scores (rliable), which a few catastrophic tasks cannot swing; **final score",
        "(mean)**: their group-balanced mean; **AUC**: the whole rollout; **in-context gain**: final minus first",
        "quarter; **reach 0.5**: fraction of tasks whose mean score from some anchor before the last quarter to",
        "the end reaches 0.5 (median steps); **paper-style max**: the maximum of the smoothed mean curve, as in",
        "the paper, biased upward (for comparison only). Intervals: 95 %; the IQM's is a t interval whose",
        "variance adds the tasks' bootstrap variance and the spread between seeds (2 df at 3 seeds), the others",
        "a descriptive bootstrap over seeds and tasks.",
        f"Ranks: rows with at least {REQUIRED_SEEDS} seeds, ordered by the IQM of the final score; `=k` where the",
        "seed-aware paired t test of the IQM difference with the neighbour (same task draws for both rows,",
        "Welch df; Holm-corrected over adjacent pairs) does not reject at 5 %; each pair's test of the mean is",
        "stated too (docs/statistics.md).",
        "Every row passed `python -m bench validate`.",
    ]
    for preset in sorted(accepted, key=lambda p: list(PRESETS).index(p)):
        docs = accepted[preset]
        table, statements = preset_table(docs)
        out += ["", f"## Preset `{preset}`", "", table]
        if statements:
            out += ["", "Adjacent ranked rows, final score (IQM, then mean):", "", *statements]
        ood = ood_table(docs)
        if ood is not None:
            out += [
                "",
                f"### Out of distribution: the paper's Table 1 tasks (`{preset}`)",
                "",
                "Final score per task (mean over seeds; docs/ood.md defines the tasks).",
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
