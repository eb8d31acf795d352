"""A latency plot a person can read at a glance: one box per model, its median written on it.

Each model gets a horizontal box (quartiles, whiskers to the 5th and 95th percentiles) over
its individual timings drawn as faint dots, with the p50 printed beside the box; the
PyTorch baseline is drawn in grey and each artifact's speed-up over it is printed. A
logarithmic axis is used when the medians differ by more than 10x. matplotlib (Agg, no
display) is imported inside the function.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevit._files import replacing
from edgevit.errors import require


def plot_latency(report, path: str | Path) -> Path:
    """Write the PNG for ``report`` to ``path`` and return it."""
    matplotlib = require("matplotlib", "bench", "plotting benchmark results")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    results = list(reversed(report.results))  # first model at the top
    baseline = report.baseline()
    height = 1.4 + 0.55 * len(results)
    fig, ax = plt.subplots(figsize=(9, height), dpi=110)
    data = [np.asarray(r.samples_ms) for r in results]
    positions = np.arange(1, len(results) + 1)
    style = {"whis": (5, 95), "widths": 0.55, "showfliers": False, "patch_artist": True,
             "medianprops": {"color": "black", "linewidth": 1.6}}
    try:
        boxes = ax.boxplot(data, positions=positions, orientation="horizontal", **style)
    except TypeError:  # matplotlib < 3.10
        boxes = ax.boxplot(data, positions=positions, vert=False, **style)
    rng = np.random.default_rng(0)
    for pos, result, samples, box in zip(positions, results, data, boxes["boxes"]):
        colour = "#9e9e9e" if result.kind == "torch" else "#4c8bd6"
        box.set_facecolor(colour)
        box.set_alpha(0.55)
        jitter = pos + rng.uniform(-0.18, 0.18, size=samples.size)
        ax.scatter(samples, jitter, s=4, color=colour, alpha=0.35, linewidths=0, zorder=1)
        label = f"p50 {_ms(result.latency.p50_ms)}"
        if baseline is not None and result is not baseline:
            label += f"\n{_versus(baseline.latency.p50_ms / result.latency.p50_ms)} {baseline.name}"
        ax.annotate(label, (1.01, pos), xycoords=("axes fraction", "data"), va="center", fontsize=9,
                    fontweight="bold" if result.kind != "torch" else "normal")
    ax.set_yticks(positions, [f"{r.name}\n{r.backend}, {_threads(r.threads)}" for r in results], fontsize=8)
    medians = [r.latency.p50_ms for r in results]
    low = min(float(np.min(d)) for d in data)
    high = max(float(np.percentile(d, 95)) for d in data)
    if max(medians) / max(min(medians), 1e-9) > 10:
        ax.set_xscale("log")
        ax.set_xlim(low / 1.3, high * 1.3)
    else:
        ax.set_xlim(max(0.0, low - 0.05 * (high - low)), high + 0.05 * (high - low) + 1e-9)
    o = report.options
    ax.set_xlabel(f"latency per call (ms), batch {o.batch}; box: quartiles, whiskers: p5-p95, dots: every run")
    ax.set_title(plot_title(report), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    try:
        with replacing(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_title(report) -> str:
    """The machine, how loaded it was (a speed-up measured on a busy machine can be several times
    another run's), and how the runs were taken."""
    env, o = report.environment, report.options
    load = f", load {env.load_average_1m:.1f}" if env.load_average_1m is not None else ""
    return f"{env.cpu_model}{load} - {o.runs} {'interleaved ' if o.interleave else ''}runs per model"


def _versus(speedup: float) -> str:
    return f"{speedup:.2f}x faster than" if speedup >= 1 else f"{1 / speedup:.2f}x slower than"


def _ms(value: float) -> str:
    return f"{value:.3g} ms" if value < 1000 else f"{value / 1000:.3g} s"


def _threads(threads: int | None) -> str:
    return "default threads" if threads is None else f"{threads} thread" + ("s" if threads != 1 else "")
