"""`python -m bench plot`: comparison figures (PNG and SVG) in `results/plots/`.

Per preset: anchored score curves per ns group with 95 % bands (two-level bootstrap over seeds and
tasks, as the leaderboard); an rliable-style performance profile of the run x task final scores
and the probability-of-improvement matrix; and, as a diagnostic rather than a ranking, the offline
action and next-observation losses by context position. When `results/perf/backbones.json`
exists, training time and memory against sequence length. Only results that pass validation are
drawn. Colours are fixed per architecture, so the same backbone looks the same in every figure.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from architectures import REGISTRY  # noqa: E402
from bench.report import stats  # noqa: E402
from bench.report.leaderboard import (  # noqa: E402
    BASELINE_LABELS,
    BASELINES,
    BOOTSTRAP_REPS,
    BOOTSTRAP_SEED,
    collect,
)
from bench.report.scores import RunScores, run_scores  # noqa: E402

PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
BASELINE_STYLE = {"oracle": ("#444444", "--"), "random": ("#999999", ":"), "tql_ucb": ("#777777", "-.")}
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "figure.dpi": 110,
    "svg.hashsalt": "anymdp-bench",  # fixed SVG element ids: the same results give the same bytes
}


def arch_color(arch: str) -> str:
    """Registered backbones keep their registry position; others share the palette's last colours."""
    names = list(REGISTRY)
    index = names.index(arch) if arch in names else len(names) + sum(map(ord, arch)) % (len(PALETTE) - len(names))
    return PALETTE[index]


def curve_band(scores: RunScores, group: str, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Anchors, the mean anchored score of one group's tasks (mean over seeds), and its 95 % band
    (seeds, then the group's tasks resampled)."""
    index = np.flatnonzero(np.asarray(scores.groups, dtype=object) == group)
    curves = scores.curves[:, index]  # (R, n, K)
    runs = curves[rng.integers(0, curves.shape[0], size=(BOOTSTRAP_REPS, curves.shape[0]))].mean(axis=1)
    tasks = rng.integers(0, index.size, size=(BOOTSTRAP_REPS, index.size))
    samples = np.nanmean(np.take_along_axis(runs, tasks[:, :, None], axis=1), axis=1)  # (B, K)
    lo, hi = np.nanpercentile(samples, [2.5, 97.5], axis=0)
    return scores.anchors, np.nanmean(curves.mean(axis=0), axis=0), lo, hi


def _by_arch(docs: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for doc in sorted(docs, key=lambda d: (d["arch"], d["seed"])):
        groups[doc["arch"]].append(doc)
    return dict(sorted(groups.items()))


def _agents(docs: list[dict]) -> dict[str, tuple[RunScores, str, str, float]]:
    """name -> (scores, colour, line style, width) of every architecture and baseline."""
    out = {}
    for arch, group in _by_arch(docs).items():
        out[f"{arch} ({len(group)} seed{'s' if len(group) != 1 else ''})"] = (
            run_scores(group, "model"),
            arch_color(arch),
            "-",
            1.8,
        )
    first = min(docs, key=lambda d: (d["arch"], d["seed"]))
    for agent in BASELINES:
        color, style = BASELINE_STYLE[agent]
        out[BASELINE_LABELS[agent]] = (run_scores([first], agent), color, style, 1.3)
    return out


def plot_curves(preset: str, docs: list[dict]) -> plt.Figure:
    """One panel per ns group: the mean anchored score against the step of the rollout."""
    agents = _agents(docs)
    groups = list(dict.fromkeys(next(iter(agents.values()))[0].groups))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups) + 2.4, 4.2), sharey=True, squeeze=False)
    for ax, group in zip(axes[0], groups):
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        for label, (scores, color, style, width) in agents.items():
            t, mean, lo, hi = curve_band(scores, group, rng)
            ax.plot(t, mean, color=color, ls=style, lw=width, label=label)
            if style == "-":
                ax.fill_between(t, lo, hi, color=color, alpha=0.18, lw=0)
        ax.set_title(f"{group} ({sum(g == group for g in scores.groups)} tasks)")
        ax.set_xlabel("rollout step on an unseen task")
        ax.axhline(0.0, color="#dddddd", lw=0.8)
    axes[0][0].set_ylabel("normalised score (anchored episodes)")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle(f"In-context RL on unseen tasks by ns group ({preset}; 95 % bands over seeds and tasks)")
    return fig


def _finals(docs: list[dict]) -> dict[str, np.ndarray]:
    """Run x task final scores of each architecture and the random and TQL-UCB baselines, on common tasks."""
    named = {arch: run_scores(group, "model").values["final"] for arch, group in _by_arch(docs).items()}
    first = min(docs, key=lambda d: (d["arch"], d["seed"]))
    for agent in ("random", "tql_ucb"):
        named[agent] = run_scores([first], agent).values["final"]
    return dict(zip(named, stats.finite_tasks(*named.values())))


def plot_profile(preset: str, docs: list[dict]) -> plt.Figure:
    """rliable's performance profile: fraction of run x task final scores above each threshold."""
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    taus = np.linspace(-0.5, 1.5, 81)
    for name, final in _finals(docs).items():
        found = stats.performance_profile(final, taus, BOOTSTRAP_REPS, BOOTSTRAP_SEED)
        color, style = BASELINE_STYLE[name] if name in BASELINE_STYLE else (arch_color(name), "-")
        ax.plot(taus, found.point, color=color, ls=style, lw=1.6, label=name)
        ax.fill_between(taus, found.lo, found.hi, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("final score threshold τ")
    ax.set_ylabel("fraction of runs x tasks with score > τ")
    ax.set_title(f"Performance profile ({preset}; 95 % bands, stratified bootstrap)")
    ax.legend(frameon=False)
    return fig


def plot_poi(preset: str, docs: list[dict]) -> plt.Figure:
    """P(row > column) of the final score per task, averaged over tasks (rliable)."""
    finals = _finals(docs)
    names = list(finals)
    matrix = np.array(
        [[np.nan if a == b else stats.probability_of_improvement(finals[a], finals[b]) for b in names] for a in names]
    )
    fig, ax = plt.subplots(figsize=(1.0 * len(names) + 3.0, 0.8 * len(names) + 2.2))
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="RdBu")
    for i in range(len(names)):
        for j in range(len(names)):
            if i != j:
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_title(f"Probability of improvement P(row > column) ({preset})")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def plot_offline_loss(preset: str, docs: list[dict]) -> plt.Figure:
    """Offline action and next-observation cross-entropy by context position (a diagnostic)."""
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.4))
    for ax, key, label in zip(
        axes, ("action_ce", "obs_ce"), ("action cross-entropy vs oracle label", "next-observation cross-entropy")
    ):
        for arch, group in _by_arch(docs).items():
            edges = np.asarray(group[0]["offline"]["bin_edges"], dtype=np.float64)
            centres = np.sqrt(np.maximum(edges[:-1], 1) * edges[1:])
            values = np.array([doc["offline"][key] for doc in group])
            ax.errorbar(
                centres,
                values.mean(0),
                yerr=values.std(0) if len(group) > 1 else None,
                color=arch_color(arch),
                marker="o",
                ms=4,
                lw=1.6,
                capsize=2,
                label=arch,
            )
        ax.set_xscale("log")
        ax.set_xlabel("context position (steps, geometric bin centre)")
        ax.set_ylabel(f"{label} (nats)")
    axes[0].legend(frameon=False)
    fig.suptitle(f"Offline losses by context position on held-out sequences ({preset}; a diagnostic, not a rank)")
    return fig


def plot_scaling(perf: dict, axes: tuple[plt.Axes, plt.Axes]) -> None:
    rows = perf["scaling"]
    for arch in sorted({row["arch"] for row in rows}):
        mine = sorted((r for r in rows if r["arch"] == arch), key=lambda r: r["T"])
        t = [r["T"] for r in mine]
        axes[0].plot(t, [r["seconds"] for r in mine], marker="o", color=arch_color(arch), label=arch)
        axes[1].plot(t, [r["peak_mib"] for r in mine], marker="o", color=arch_color(arch), label=arch)
    for ax, label in zip(axes, ("time per forward + backward (s)", "peak memory growth (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T (steps)")
        ax.set_ylabel(label)
    layer = f"one layer, d_model {perf.get('d_model', '?')}, batch 1"
    axes[0].set_title(f"Training cost vs length ({layer}; {perf.get('device', 'cpu')})", fontsize=10)
    axes[1].set_title(f"Memory vs length ({layer})", fontsize=10)
    axes[0].legend(frameon=False)


def _save(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.tight_layout()
    for path in paths:
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        fig.savefig(tmp, **({"metadata": {"Date": None}} if path.suffix == ".svg" else {}))
        tmp.replace(path)
    plt.close(fig)
    return paths


FIGURES = {"curves": plot_curves, "profile": plot_profile, "poi": plot_poi, "offline_loss": plot_offline_loss}


def make_plots(root: Path = Path("results"), out: Path | None = None, perf_json: Path | None = None) -> list[Path]:
    out = root / "plots" if out is None else out
    accepted, _ = collect(root)
    written: list[Path] = []
    with plt.rc_context(STYLE):
        for preset, docs in sorted(accepted.items()):
            for name, draw in FIGURES.items():
                written += _save(draw(preset, docs), out, f"{preset}_{name}")
        perf_json = root / "perf" / "backbones.json" if perf_json is None else perf_json
        if perf_json.exists():
            fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.4))
            plot_scaling(json.loads(perf_json.read_text()), axes)
            written += _save(fig, out, "scaling")
    return written


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=Path("results"), help="folder of result files")
    parser.add_argument("--out", type=Path, default=None, help="figure folder (default: <results>/plots)")
    parser.add_argument(
        "--perf-json",
        type=Path,
        default=None,
        help="scaling measurements from `bench perf backbones --json` (default: <results>/perf/backbones.json)",
    )


def main(args: argparse.Namespace) -> int:
    written = make_plots(args.results, args.out, args.perf_json)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("no valid result files: nothing to plot")
    return 0
