"""The host loop `rpg-jax train` and `rpg-jax sweep` share: compile a chunk with the memory check, run it chunk
after chunk (the host sees only metrics between chunks), check every number, log, checkpoint the whole training
state every K chunks, resume from the newest checkpoint, and on a non-finite number write the failure into
summary.json and keep the last good checkpoint.

What differs between a run and a sweep is passed in: how a chunk's metrics are checked (a sweep names the member),
logged (a sweep writes one record per member) and brought to the host for a checkpoint (a sweep gathers its members
from every process, and only process 0 writes).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from rpg_jax import devices, health, rundir
from rpg_jax.logging import MetricsWriter, keep_records_until, open_wandb


@dataclasses.dataclass(frozen=True)
class Chunks:
    """How a training program is run between its chunks.

    Attributes:
      out: the run (or sweep) directory.
      command: "train" or "sweep": what `--resume` continues it with.
      num_chunks: the last chunk to run.
      checkpoint_every: save the training state every K chunks (0: only after the last).
      failure_head: the keys summary.json starts with, should the run fail.
      primary: whether this process writes (a multi-host sweep's process 0; always for a run).
    """

    out: Path
    command: str
    num_chunks: int
    checkpoint_every: int
    failure_head: dict[str, Any]
    primary: bool = True

    def saves_after(self, index: int) -> bool:
        return index == self.num_chunks or bool(self.checkpoint_every and index % self.checkpoint_every == 0)


def compile_checked(jitted: Any, state: Any) -> Any:
    """The jitted chunk compiled for `state`, refused (UserError) where it would not fit in device memory."""
    try:
        return devices.compile_checked(jitted.lower(state))
    except jax.errors.JaxRuntimeError as e:
        devices.raise_if_out_of_memory(e)
        raise


def open_writer(out: Path, record: dict[str, Any], *, stream, tensorboard: bool, wandb: bool,
                fresh: bool) -> MetricsWriter:
    """metrics.jsonl (appended to when resuming), TensorBoard events and Weights & Biases as asked."""
    return MetricsWriter(rundir.metrics_path(out), stream=stream, tensorboard=tensorboard,
                         wandb_run=open_wandb(out, record) if wandb else None, fresh=fresh)


def snapshot(out: Path, template: Any) -> tuple[int, Any, float]:
    """(chunks done, the training state on the host, seconds trained) of the newest snapshot in `out`, which must
    have `template`'s structure (a TrainState); reads only."""
    chunks_done, saved = rundir.restore_train_state(out, {"state": template, "train_s": np.zeros((), np.float64)})
    return chunks_done, saved["state"], float(saved["train_s"])


def restore(out: Path, template: Any, primary: bool = True) -> tuple[int, Any, float]:
    """`snapshot`, to continue from: the metrics of later chunks and the summary are dropped, as the chunks will
    run again."""
    chunks_done, state, train_s = snapshot(out, template)
    if primary:
        keep_records_until(rundir.metrics_path(out), chunks_done)
        rundir.clear_summary(out)
    return chunks_done, state, train_s


def run_chunks(chunks: Chunks, chunk: Callable, state: Any, *, first: int, train_s: float,
               check: Callable[[dict, int], None], log: Callable[[int, dict, float, float, Any], Any],
               to_host: Callable[[Any], Any] = jax.device_get) -> tuple[Any, float, Any]:
    """Runs chunks `first` … `chunks.num_chunks`: (final state, seconds trained in all, the last `log` result).

    `check(metrics, index)` raises health.NonFiniteError; the loop then writes the failure summary and raises a
    FloatingPointError saying which checkpoint is kept. `log(index, metrics, seconds, seconds trained in all, state,
    eta_s)` sees the metrics without their finite flags, and the seconds the chunks left are expected to take.
    """
    logged, trained_before = None, train_s
    for index in range(first, chunks.num_chunks + 1):
        start = time.perf_counter()
        try:
            state, metrics = chunk(state)
            metrics = to_host(metrics)
        except jax.errors.JaxRuntimeError as e:
            devices.raise_if_out_of_memory(e)
            raise
        elapsed = time.perf_counter() - start
        train_s += elapsed
        try:
            check(metrics, index)
        except health.NonFiniteError as e:
            raise diverged(chunks, e) from None
        eta_s = (chunks.num_chunks - index) * (train_s - trained_before) / (index - first + 1)
        logged = log(index, health.split_flags(metrics)[0], elapsed, train_s, state, eta_s)
        if chunks.saves_after(index):
            saved = {"state": to_host(state), "train_s": np.asarray(train_s, np.float64)}
            if chunks.primary:
                rundir.save_train_state(chunks.out, index, saved)
    return state, train_s, logged


class Diverged(FloatingPointError):
    """A run stopped by a non-finite number; `summary`: the failure summary.json it wrote."""

    def __init__(self, message: str, summary: dict[str, Any], member: int | None):
        super().__init__(message)
        self.summary = summary
        self.member = member


def diverged(chunks: Chunks, error: health.NonFiniteError) -> Diverged:
    """Writes the failure into summary.json and returns the error to raise: chunk, quantity, kept checkpoint."""
    out = chunks.out
    saved = rundir.saved_train_states(out)
    if saved:
        kept = (f"the last good checkpoint (chunk {saved[-1]}) is kept in {rundir.train_state_dir(out)}; "
                f"`rpg-jax {chunks.command} --resume {out}` continues from it")
    else:
        kept = "no checkpoint had been saved yet (--checkpoint-every)"
    message = f"{error}: {kept}"
    summary = rundir.failure_summary(chunks.failure_head, chunk=error.chunk, quantity=error.quantity,
                                     message=message, last_checkpoint=saved[-1] if saved else None,
                                     member=error.member)
    if chunks.primary:
        rundir.write_summary(out, summary)
    return Diverged(message, summary, error.member)
