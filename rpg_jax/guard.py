"""The episode-end guard: did a customization give up the basic task?

A customizer never sees the basic reward, but it sees how episodes end. With a per-step add-on penalty and
log π_prior ≤ 0, every step of the shaped reward r_R + ω'·log π_prior costs something, so an approximate prior
can make ending the episode look good (README, "Keeping the basic task, seed after seed"; `tabular.quit_chain`).
After a customization the customized policy and its prior run on the same evaluation starts; the guard warns
when the customized episodes end by termination markedly more often or earlier than the prior's on a task where a
termination is a failure (a fall), or reach the terminal markedly less often where it is the goal (mountaincar's
flag).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import chex

from rpg_jax import envs, evaluation
from rpg_jax.prior import Prior

# Markedly: a quarter of the evaluation episodes more (or less), or three quarters of the prior's length.
FRACTION_MARGIN = 0.25
LENGTH_RATIO = 0.75


def episode_ends(returns: dict[str, dict[str, float]]) -> dict[str, float]:
    """The fraction of evaluation episodes that ended by termination and their mean length, from
    `evaluation.summarize`'s results."""
    return {"terminated": returns["terminated"]["mean"], "length": returns["length"]["mean"]}


def compare(customized: dict[str, dict[str, float]], prior: dict[str, dict[str, float]], terminal: str,
            episodes: int) -> dict[str, Any]:
    """The guard's record for summary.json: both policies' episode ends and a warning (None when quiet).

    Args:
      customized, prior: `evaluation.summarize` results on the same evaluation starts.
      terminal: "failure" when a termination ends the task badly (a fall), "success" when it is the goal.
      episodes: evaluation episodes per policy (to name the counts).
    """
    if terminal not in ("failure", "success"):
        raise ValueError(f"terminal must be 'failure' or 'success', got {terminal!r}")
    ends, prior_ends = episode_ends(customized), episode_ends(prior)
    if terminal == "failure":
        more_often = ends["terminated"] - prior_ends["terminated"] >= FRACTION_MARGIN
        earlier = ends["terminated"] > 0 and ends["length"] < LENGTH_RATIO * prior_ends["length"]
        gave_up = more_often or earlier
        what = "ended by termination (a failure on this task)"
    else:
        gave_up = prior_ends["terminated"] - ends["terminated"] >= FRACTION_MARGIN
        what = "reached the task's terminal goal"

    def count(e: dict[str, float]) -> str:
        return f"{round(e['terminated'] * episodes)} of {episodes}"

    warning = None
    if gave_up:
        warning = (f"the customized policy may have given up the basic task: {count(ends)} evaluation episodes "
                   f"{what}, mean length {ends['length']:.0f}; the prior's, on the same starts: "
                   f"{count(prior_ends)}, mean length {prior_ends['length']:.0f}")
    return {"customized": ends, "prior": prior_ends, "terminal": terminal, "warning": warning}


def check_prior(customized: dict[str, dict[str, float]], prior: Prior, task: str, key: chex.PRNGKey,
                episodes: int) -> dict[str, Any]:
    """Runs the prior on the evaluation starts of `key` (the customized policy's) and compares (`compare`)."""
    prior_returns = evaluation.evaluate_policy(prior, task, key, episodes)
    return compare(customized, prior_returns, envs.get_task(task).terminal, episodes)


def warn(checked: dict[str, Any], where: Path | str) -> None:
    """The guard's one-line warning on stderr, quiet or not (it is about the result, not the progress)."""
    if checked["warning"]:
        print(f"rpg-jax: warning: {where}: {checked['warning']} (summary.json: guard)", file=sys.stderr,
              flush=True)
