"""The customization frontier: basic return against add-on return, one point per hyperparameter setting.

Uses matplotlib's object API (no pyplot), so saving a figure never touches a notebook's or a script's backend.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence
from typing import Any

SYMBOLS = {"prior_weight": "ω'", "temperature": "α̂", "beta": "β", "learning_rate": "lr"}


def point_label(point: dict[str, float]) -> str:
    return ", ".join(f"{SYMBOLS.get(name, name)} = {value:g}" for name, value in point.items())


def plot_frontier(ax: Any, points: Sequence[dict[str, Any]], *, along: str | None = "prior_weight",
                  label: str | None = None, **style) -> None:
    """Draws grid points as basic vs add-on return with error bars (std over seeds).

    `points` are a sweep summary's `points` ({"point": {name: value}, "eval": {metric: {mean, std}}}). Points
    that differ only in `along` (default ω') are joined by a line in order of that value, so each line is one
    trade-off curve; every marker is annotated with its `along` value.
    """
    curves: dict[tuple, list[dict[str, Any]]] = {}
    for p in points:
        rest = tuple((k, v) for k, v in p["point"].items() if k != along)
        curves.setdefault(rest, []).append(p)
    for rest, curve in curves.items():
        curve = sorted(curve, key=lambda p: p["point"].get(along, 0.0))
        def stat(metric, key, curve=curve):
            return [p["eval"][metric][key] for p in curve]

        name = label or "sweep"
        if rest:
            name += f" ({point_label(dict(rest))})"
        ax.errorbar(stat("basic_return", "mean"), stat("addon_return", "mean"), xerr=stat("basic_return", "std"),
                    yerr=stat("addon_return", "std"), marker="o", capsize=3, label=name, **style)
        for p in curve:
            if along in p["point"]:
                ax.annotate(f"{SYMBOLS.get(along, along)}={p['point'][along]:g}",
                            (p["eval"]["basic_return"]["mean"], p["eval"]["addon_return"]["mean"]),
                            textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("basic return (the prior's task)")
    ax.set_ylabel("add-on return (the new requirement)")


def save_frontier(points: Sequence[dict[str, Any]], path: Path, title: str, *, along: str | None = "prior_weight",
                  label: str | None = None) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.subplots()
    plot_frontier(ax, points, along=along, label=label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)


RETURN_NAMES = {"basic_return": "basic", "addon_return": "add-on", "total_return": "total"}


def plot_return_bars(ax: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Grouped bars: for each policy (`rows`: {"label", "eval": {metric: {mean, std}}}) its basic, add-on and
    total return, mean ± std as the error bar."""
    width = 0.8 / len(RETURN_NAMES)
    for j, (metric, name) in enumerate(RETURN_NAMES.items()):
        xs = [i + (j - 1) * width for i in range(len(rows))]
        ax.bar(xs, [r["eval"][metric]["mean"] for r in rows], width, yerr=[r["eval"][metric]["std"] for r in rows],
               capsize=3, label=name)
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_ylabel("return")


def save_return_bars(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    plot_return_bars(ax, rows)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
