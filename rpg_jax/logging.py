"""Host-side output between jitted chunks: metrics.jsonl, TensorBoard events, optional Weights & Biases, and a
one-line-per-chunk progress report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from rpg_jax.errors import UserError


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


NOT_SCALARS = ("chunk", "chunks", "member", "seed", "env_steps")


class MetricsWriter:
    """Appends one JSON object per line to `metrics.jsonl`, mirrors the numbers to TensorBoard event files in
    the same folder (and to a W&B run when given), and prints a short progress line.

    A sweep's records carry a `member` index: its TensorBoard tags are `<metric>/member_<i>`, so one chart
    holds every member of the grid.
    """

    def __init__(self, path: Path, stream: TextIO | None = sys.stdout, tensorboard: bool = True,
                 wandb_run: Any = None, fresh: bool = True):
        """`fresh`: start the log anew (metrics.jsonl emptied, old event files removed); else append to it."""
        self.path = Path(path)
        self.stream = stream
        if fresh:
            for events in self.path.parent.glob("events.out.tfevents.*"):
                events.unlink()
        self._file = self.path.open("w" if fresh else "a")
        self._tensorboard = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tensorboard = SummaryWriter(logdir=str(self.path.parent), flush_secs=10)
        self._wandb = wandb_run

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in record.items()}
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()
        scalars = {k: v for k, v in clean.items()
                   if k not in NOT_SCALARS and isinstance(v, (int, float)) and not isinstance(v, bool)}
        step = int(record.get("env_steps", record.get("chunk", 0)))
        suffix = f"/member_{record['member']:03d}" if "member" in record else ""
        if self._tensorboard is not None:
            for name, value in scalars.items():
                self._tensorboard.add_scalar(name + suffix, value, global_step=step)
        if self._wandb is not None:
            self._wandb.log({name + suffix: value for name, value in scalars.items()}, step=step)
        if self.stream is not None:
            self.stream.write(progress_line(record) + "\n")
            self.stream.flush()

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()


def require_wandb() -> None:
    """Refuses --wandb early, before anything is built, when the optional package is missing."""
    if "wandb" in sys.modules:  # imported already (or blocked with None)
        available = sys.modules["wandb"] is not None
    else:
        available = importlib.util.find_spec("wandb") is not None
    if not available:
        raise UserError("--wandb needs the wandb package: pip install 'rpg_jax[wandb]'")


def open_wandb(out: Path, config: dict[str, Any], project: str = "rpg_jax") -> Any:
    """A Weights & Biases run in offline mode, its files under `out/wandb` (`wandb sync` uploads them later)."""
    require_wandb()
    import wandb

    return wandb.init(project=project, name=Path(out).name, dir=str(out), config=config, mode="offline")


def keep_records_until(path: Path, chunk: int) -> None:
    """Drops the lines of `metrics.jsonl` after `chunk`: a resumed run rewrites the chunks it repeats."""
    path = Path(path)
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line).get("chunk", 0) <= chunk]
    path.write_text("".join(line + "\n" for line in kept))


def progress_line(record: dict[str, Any]) -> str:
    def fmt(name: str) -> str:
        v = record.get(name)
        return "    n/a" if v is None or not np.isfinite(v) else f"{v:7.1f}"

    line = (
        f"[{record['chunk']:>3}/{record['chunks']}] steps {record['env_steps']:>10,d}"
        f" | {record['steps_per_s']:>8,.0f} steps/s | {time_so_far(record['wall_s'], record['eta_s'])}"
        f" | episode basic {fmt('episode_basic_return')} add-on {fmt('episode_addon_return')}"
    )
    if "shaped_reward" in record:
        line += f" | shaped r {record['shaped_reward']:+.3f}"
    return line


def clock(seconds: float) -> str:
    """A duration as m:ss, or h:mm:ss from an hour: "0:42", "12:05", "1:02:03"."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def time_so_far(wall_s: float, eta_s: float) -> str:
    """Elapsed wall time (compiling included) and the training time left at the pace of the chunks so far:
    "0:42 elapsed, ~1:30 left"."""
    return f"{clock(wall_s)} elapsed, ~{clock(eta_s)} left"
