"""Atomic orbax checkpoints of pytrees, plus the JSON files of a run directory."""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from rpg_jax.errors import UserError


def _checkpointer() -> ocp.Checkpointer:
    """An orbax checkpointer for this process alone. Our trees are host NumPy, and in a multi-process sweep only
    process 0 writes: orbax must not wait at its cross-process barriers for processes that never save."""
    me = jax.process_index()
    options = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    return ocp.Checkpointer(ocp.PyTreeCheckpointHandler(multiprocessing_options=options),
                            multiprocessing_options=options)


def save(path: str | os.PathLike, tree: Any) -> Path:
    """Writes `tree` to `path` atomically: into a sibling temporary directory, then renamed into place.

    A save killed midway leaves any previous checkpoint at `path` intact; orbax itself refuses to overwrite, so
    the old directory is moved aside only after the new one is complete.
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    _checkpointer().save(tmp, jax.device_get(tree))
    if path.exists():
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old)
    else:
        tmp.rename(path)
    return path


def restore(path: str | os.PathLike, template: Any) -> Any:
    """Reads a checkpoint into the structure, shapes and dtypes of `template`; a clear error if it cannot."""
    path = Path(path).absolute()
    if not path.is_dir():
        raise UserError(f"no checkpoint at {path}")
    template = jax.device_get(template)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), template)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = _checkpointer().restore(path, item=template, restore_args=restore_args)
    except Exception as e:  # orbax raises many types (ValueError, FileNotFoundError, tensorstore errors).
        raise UserError(f"checkpoint at {path} is corrupt or incomplete: {type(e).__name__}: {e}") from e
    for got, want in zip(jax.tree.leaves(tree), jax.tree.leaves(template)):
        if np.shape(got) != np.shape(want):
            raise UserError(f"checkpoint at {path} holds shape {np.shape(got)} where {np.shape(want)} was expected")
    return tree


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Writes JSON atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_to_builtin) + "\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is missing: is {path.parent} a run directory?") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None


def _to_builtin(x: Any) -> Any:
    if isinstance(x, (np.ndarray, np.generic, jax.Array)):
        return np.asarray(x).tolist()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"cannot write {type(x).__name__} to JSON")
