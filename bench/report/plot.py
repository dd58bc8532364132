"""`python -m bench plot`: comparison figures (PNG and SVG) in `results/plots/`.

Per preset: d_t curves with 95 % bands (two-level bootstrap over seeds and tasks, as the
leaderboard), offline action loss against context position, asymptotic against few-shot score,
and, when `python -m bench perf backbones --json results/perf/backbones.json` has been run,
training time and memory against sequence length. Only results that pass validation are drawn.
Colours are fixed per architecture, so the same backbone looks the same in every figure.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from architectures import REGISTRY  # noqa: E402
from bench import metrics  # noqa: E402
from bench.report.leaderboard import (  # noqa: E402
    BASELINE_LABELS,
    BASELINES,
    BOOTSTRAP_SAMPLES,
    BOOTSTRAP_SEED,
    _nanmean_rows,
    _seed_task_bootstrap,
    agent_task_arrays,
    collect,
)

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


def _curve_band(docs: list[dict], agent: str, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Window starts, mean d_t over seeds, and its 95 % band (seeds, then tasks resampled)."""
    arrays = [agent_task_arrays(doc, agent) for doc in docs]
    starts, n_tasks = arrays[0][0], arrays[0][1].shape[0]
    weights = metrics.bootstrap_weights(n_tasks, BOOTSTRAP_SAMPLES, int(rng.integers(2**31)))
    seed_draws = rng.integers(0, len(docs), size=(BOOTSTRAP_SAMPLES, len(docs)))
    ones = np.ones((1, n_tasks))
    with warnings.catch_warnings():  # windows where no episode starts are NaN, and stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(np.stack([_nanmean_rows(ones, windows)[0] for _, windows, _ in arrays]), axis=0)
        draws = np.stack([_nanmean_rows(weights, windows) for _, windows, _ in arrays], axis=1)  # (B, S, W)
        samples = np.nanmean(draws[np.arange(BOOTSTRAP_SAMPLES)[:, None], seed_draws], axis=1)
        lo, hi = np.nanpercentile(samples, [2.5, 97.5], axis=0)
    return starts, mean, lo, hi


def _by_arch(docs: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for doc in sorted(docs, key=lambda d: (d["arch"], d["seed"])):
        groups[doc["arch"]].append(doc)
    return dict(sorted(groups.items()))


def plot_d_curves(preset: str, docs: list[dict], ax: plt.Axes) -> None:
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    for arch, group in _by_arch(docs).items():
        t, mean, lo, hi = _curve_band(group, "model", rng)
        ax.plot(
            t + 1,
            mean,
            color=arch_color(arch),
            lw=1.8,
            label=f"{arch} ({len(group)} seed{'s' if len(group) != 1 else ''})",
        )
        ax.fill_between(t + 1, lo, hi, color=arch_color(arch), alpha=0.18, lw=0)
    by_seed = {doc["seed"]: doc for doc in docs}
    baseline_docs = [by_seed[s] for s in sorted(by_seed)]
    for agent in BASELINES:
        t, mean, _, _ = _curve_band(baseline_docs, agent, rng)
        color, style = BASELINE_STYLE[agent]
        ax.plot(t + 1, mean, color=color, ls=style, lw=1.3, label=BASELINE_LABELS[agent])
    ax.set_xscale("log")
    ax.set_xlabel("interaction steps t on an unseen task (log scale)")
    ax.set_ylabel("normalised return d_t")
    ax.set_title(f"In-context RL on unseen tasks ({preset} preset)")
    ax.axhline(0.8, color="#bbbbbb", lw=0.8)
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False
    )  # outside: the oracle line runs along the top


def plot_action_loss(preset: str, docs: list[dict], ax: plt.Axes) -> None:
    for arch, group in _by_arch(docs).items():
        edges = np.asarray(group[0]["offline"]["bin_edges"], dtype=np.float64)
        centres = np.sqrt(np.maximum(edges[:-1], 1) * edges[1:])
        values = np.array([doc["offline"]["action_ce"] for doc in group])
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
    ax.set_ylabel("action cross-entropy vs oracle label (nats)")
    ax.set_title(f"Offline policy loss by context position ({preset})")
    ax.legend(frameon=False)


def plot_asymptotic_vs_few_shot(preset: str, docs: list[dict], ax: plt.Axes) -> None:
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    for arch, group in _by_arch(docs).items():
        asym, few = _seed_task_bootstrap(group, "model", rng)
        ax.errorbar(
            few.mean,
            asym.mean,
            xerr=[[few.mean - few.lo], [few.hi - few.mean]],
            yerr=[[asym.mean - asym.lo], [asym.hi - asym.mean]],
            color=arch_color(arch),
            marker="o",
            ms=7,
            capsize=3,
            lw=1.4,
            label=arch,
        )
    ax.set_xlabel("few-shot score (first K episodes)")
    ax.set_ylabel("asymptotic score (max of smoothed d_t)")
    ax.set_title(f"Asymptotic vs few-shot ({preset}; 95 % intervals)")
    ax.legend(frameon=False)


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


def make_plots(root: Path = Path("results"), out: Path | None = None, perf_json: Path | None = None) -> list[Path]:
    out = root / "plots" if out is None else out
    accepted, _ = collect(root)
    written: list[Path] = []
    with plt.rc_context(STYLE):
        for preset, docs in sorted(accepted.items()):
            for name, draw in (
                ("d_curves", plot_d_curves),
                ("action_loss", plot_action_loss),
                ("asymptotic_vs_few_shot", plot_asymptotic_vs_few_shot),
            ):
                fig, ax = plt.subplots(figsize=(8.6 if name == "d_curves" else 7.0, 4.6))
                draw(preset, docs, ax)
                written += _save(fig, out, f"{preset}_{name}")
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
