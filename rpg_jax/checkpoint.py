"""Atomic orbax checkpoints of pytrees, plus the JSON files of a run directory.

Two kinds of checkpoint:
- `save` / `restore`: one pytree at one path (a run's policy), replaced atomically.
- `save_step` / `restore_latest`: numbered snapshots of a whole training state in a folder
  (`step_000012/`, …), each written under a temporary name and renamed into place, older ones deleted only
  after the newer one is complete. A process killed at any instant leaves the last complete snapshot readable.
  Each snapshot lists its leaves by pytree path (`leaves.json`, with a format version): a snapshot whose
  structure differs from the state it is restored into is refused, naming the first path that differs.
"""

from __future__ import annotations

import itertools
import json
import os
import re
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


def save(path: str | os.PathLike, tree: Any, json_files: dict[str, Any] | None = None) -> Path:
    """Writes `tree` (and `json_files`, name -> data, beside it) to `path` atomically: into a sibling temporary
    directory, then renamed into place.

    A save killed midway leaves any previous checkpoint at `path` intact; orbax itself refuses to overwrite, so
    the old directory is moved aside only after the new one is complete.
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    _checkpointer().save(tmp, jax.device_get(tree))
    for name, data in (json_files or {}).items():
        write_json(tmp / name, data)
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


STEP_PREFIX = "step_"
_STEP_PATTERN = re.compile(rf"^{STEP_PREFIX}(\d+)$")


def steps(folder: str | os.PathLike) -> list[int]:
    """The complete snapshots in `folder`, oldest first (temporaries of interrupted saves are not listed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = (_STEP_PATTERN.match(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


FORMAT_VERSION = 1
"""Version of the training-state snapshot format; 1: leaves listed by pytree path in `leaves.json`."""
MANIFEST = "leaves.json"


def save_step(folder: str | os.PathLike, step: int, tree: Any, keep: int = 2) -> Path:
    """Writes snapshot `step` of `tree` into `folder` atomically, then keeps only the `keep` newest.

    Any pytree (flax structs, Brax env states, optimizer states) round-trips bit for bit through
    `restore_latest` given a template of the same structure; `leaves.json` records each leaf's path, shape
    and dtype so that a template of another structure is refused instead of filled slot by slot.
    """
    folder = Path(folder).absolute()
    leaves = _leaves_by_path(tree)
    manifest = {"format_version": FORMAT_VERSION,
                "leaves": [{"path": p, "shape": list(x.shape), "dtype": str(x.dtype)} for p, x in leaves]}
    path = save(folder / f"{STEP_PREFIX}{step:06d}", _stored(leaves), json_files={MANIFEST: manifest})
    for old in steps(folder)[:-keep]:
        shutil.rmtree(folder / f"{STEP_PREFIX}{old:06d}", ignore_errors=True)
    for stale in folder.glob(f".{STEP_PREFIX}*"):  # temporaries left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    return path


def restore_latest(folder: str | os.PathLike, template: Any) -> tuple[int, Any]:
    """The newest snapshot in `folder` as (step, tree shaped like `template`); a clear error if none is usable
    or if its leaves are not the template's (path, shape and dtype, in order)."""
    folder = Path(folder).absolute()
    found = steps(folder)
    if not found:
        raise UserError(f"no training-state checkpoint in {folder}: the run saved none before it stopped")
    step = found[-1]
    path = folder / f"{STEP_PREFIX}{step:06d}"
    leaves = _leaves_by_path(template)
    check_structure(path, _read_manifest(path), leaves)
    flat = restore(path, _stored(leaves))
    restored = [np.asarray(flat.get(f"{i:05d}", x), dtype=x.dtype) for i, (_, x) in enumerate(leaves)]
    return step, jax.tree.unflatten(jax.tree.structure(template), restored)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return {}  # format 0: written before leaves were listed
    except json.JSONDecodeError as e:
        raise UserError(f"checkpoint at {path} is corrupt or incomplete: {MANIFEST}: {e}") from None


def check_structure(path: Path, manifest: dict[str, Any], leaves: list[tuple[str, np.ndarray]]) -> None:
    """Refuses a snapshot whose format or leaves (path, shape, dtype) differ from the template's."""
    version = manifest.get("format_version", 0)
    if version != FORMAT_VERSION:
        raise UserError(f"checkpoint at {path} has format version {version}; this rpg_jax reads version "
                        f"{FORMAT_VERSION}: start the run anew")
    stored = [(leaf["path"], tuple(leaf["shape"]), leaf["dtype"]) for leaf in manifest["leaves"]]
    wanted = [(p, tuple(x.shape), str(x.dtype)) for p, x in leaves]
    for got, want in itertools.zip_longest(stored, wanted):
        if got != want:
            where = (want or got)[0]
            raise UserError(f"checkpoint at {path} does not match this training state at {where}: it holds "
                            f"{_describe_leaf(got)}, this version expects {_describe_leaf(want)}")


def _describe_leaf(leaf: tuple | None) -> str:
    return "nothing" if leaf is None else f"{leaf[0]} {leaf[2]}{list(leaf[1])}"


def _leaves_by_path(tree: Any) -> list[tuple[str, np.ndarray]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))
    return [(jax.tree_util.keystr(path), np.asarray(x)) for path, x in flat]


def _stored(leaves: list[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """What orbax writes: the leaves by index (their paths are in the manifest); zero-size arrays (MJX states
    hold some) carry nothing and orbax refuses them, so they are left out and come back from the template."""
    return {f"{i:05d}": x for i, (_, x) in enumerate(leaves) if x.size > 0}
