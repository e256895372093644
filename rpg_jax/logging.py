"""Host-side output between jitted chunks: metrics.jsonl and a one-line-per-chunk progress report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np


def chunk_summary(metrics: dict[str, Any]) -> dict[str, float]:
    """Reduces a chunk's stacked per-iteration metrics (leading axis: iteration) to one float each.

    Episode returns are averaged over the episodes that ended, not over iterations: an iteration in which no
    episode ended reports 0 and must not pull the mean down. Other metrics are NaN in iterations that did not
    compute them (an off-policy agent filling its replay) and are averaged over the rest.
    """
    metrics = {k: np.asarray(v) for k, v in metrics.items()}
    episodes = metrics.get("episodes")
    out = {}
    for name, values in metrics.items():
        if name.startswith("episode_") and episodes is not None:
            total = episodes.sum()
            out[name] = float((values * episodes).sum() / total) if total > 0 else float("nan")
        elif name == "episodes":
            out[name] = float(values.sum())
        elif np.all(np.isnan(values)):
            out[name] = float("nan")
        else:
            out[name] = float(np.nanmean(values))
    return out


class MetricsWriter:
    """Appends one JSON object per line to `metrics.jsonl` and prints a short progress line."""

    def __init__(self, path: Path, stream: TextIO | None = sys.stdout):
        self.path = Path(path)
        self.stream = stream
        self._file = self.path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in record.items()}
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()
        if self.stream is not None:
            self.stream.write(progress_line(record) + "\n")
            self.stream.flush()

    def close(self) -> None:
        self._file.close()


def progress_line(record: dict[str, Any]) -> str:
    def fmt(name: str) -> str:
        v = record.get(name)
        return "    n/a" if v is None or not np.isfinite(v) else f"{v:7.1f}"

    line = (
        f"[{record['chunk']:>3}/{record['chunks']}] steps {record['env_steps']:>10,d}"
        f" | {record['steps_per_s']:>8,.0f} steps/s"
        f" | episode basic {fmt('episode_basic_return')} add-on {fmt('episode_addon_return')}"
    )
    if "shaped_reward" in record:
        line += f" | shaped r {record['shaped_reward']:+.3f}"
    return line
