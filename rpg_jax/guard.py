"""The episode-end guard: did a customization give up the basic task?

A customizer never sees the basic reward, but it sees how episodes end. With a per-step add-on penalty and
log π_prior ≤ 0, every step of the shaped reward r_R + ω'·log π_prior costs something, so an approximate prior
can make ending the episode look good (docs/results.md, "Keeping the basic task, seed after seed"; `tabular.quit_chain`).
After a customization the customized policy and its prior run on the same evaluation starts; the guard warns
when the customized episodes end by termination markedly more often or earlier than the prior's on a task where a
termination is a failure (a fall), or reach the terminal markedly less often where it is the goal (mountaincar's
flag).

Episode ends cannot see a lost gait: a cheetah that stops running never falls. So the guard also compares the
basic return of the two, which a registered task knows at evaluation (the customizer never saw it), and warns
when the customized policy keeps less than 90% of the prior's. Where a run knows it, the record also holds the
last chunk's KL(π ‖ π_prior) per step: how far the policy drifted from the prior.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import chex

from rpg_jax import envs, evaluation
from rpg_jax.priors import Prior

# Markedly: a quarter of the evaluation episodes more (or less), or three quarters of the prior's length.
FRACTION_MARGIN = 0.25
LENGTH_RATIO = 0.75
# Kept the basic task: at least this fraction of the prior's basic return (of its magnitude, below it).
BASIC_KEPT = 0.9


def episode_ends(returns: dict[str, dict[str, float]]) -> dict[str, float]:
    """The fraction of evaluation episodes that ended by termination, their mean length and mean basic return,
    from `evaluation.summarize`'s results."""
    return {"terminated": returns["terminated"]["mean"], "length": returns["length"]["mean"],
            "basic_return": returns["basic_return"]["mean"]}


def basic_kept(customized: float, prior: float) -> float | None:
    """The customized policy's basic return as a fraction of the prior's (None where the prior's is not
    positive: no fraction means anything there)."""
    return customized / prior if prior > 0 else None


def lost_basic_return(customized: float, prior: float) -> bool:
    """Less than BASIC_KEPT of the prior's basic return: below prior − (1 − BASIC_KEPT)·|prior|, so that the rule
    also reads on a task whose returns are negative."""
    return customized < prior - (1.0 - BASIC_KEPT) * abs(prior)


def compare(customized: dict[str, dict[str, float]], prior: dict[str, dict[str, float]], terminal: str,
            episodes: int, kl_to_prior: float | None = None) -> dict[str, Any]:
    """The guard's record for summary.json: both policies' episode ends and basic returns, the fraction of the
    basic return kept, and a warning (None when quiet).

    Args:
      customized, prior: `evaluation.summarize` results on the same evaluation starts.
      terminal: "failure" when a termination ends the task badly (a fall), "success" when it is the goal.
      episodes: evaluation episodes per policy (to name the counts).
      kl_to_prior: the last chunk's KL(π ‖ π_prior) per step on the training rollouts, where the run knows it.
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

    reasons = []
    if gave_up:
        reasons.append(f"{count(ends)} evaluation episodes {what}, mean length {ends['length']:.0f}; the prior's, "
                       f"on the same starts: {count(prior_ends)}, mean length {prior_ends['length']:.0f}")
    kept = basic_kept(ends["basic_return"], prior_ends["basic_return"])
    if lost_basic_return(ends["basic_return"], prior_ends["basic_return"]):
        share = f" ({kept:.0%})" if kept is not None else ""
        reasons.append(f"its basic return is {ends['basic_return']:.1f}{share} against the prior's "
                       f"{prior_ends['basic_return']:.1f} on the same starts (below {BASIC_KEPT:.0%})")
    warning = "the customized policy may have given up the basic task: " + "; ".join(reasons) if reasons else None
    record = {"customized": ends, "prior": prior_ends, "terminal": terminal, "basic_kept": kept, "warning": warning}
    if kl_to_prior is not None:
        record["kl_to_prior"] = kl_to_prior
    return record


def check_prior(customized: dict[str, dict[str, float]], prior: Prior, task: str, key: chex.PRNGKey,
                episodes: int, kl_to_prior: float | None = None) -> dict[str, Any]:
    """Runs the prior on the evaluation starts of `key` (the customized policy's) and compares (`compare`)."""
    prior_returns = evaluation.evaluate_policy(prior, task, key, episodes)
    return compare(customized, prior_returns, envs.get_task(task).terminal, episodes, kl_to_prior)


def warn(checked: dict[str, Any], where: Path | str) -> None:
    """The guard's one-line warning on stderr, quiet or not (it is about the result, not the progress)."""
    if checked["warning"]:
        print(f"rpg-jax: warning: {where}: {checked['warning']} (summary.json: guard)", file=sys.stderr,
              flush=True)
