import jax.numpy as jnp
import numpy as np
import pytest

from rpg_jax import checkpoint
from rpg_jax.errors import UserError

TREE = {"params": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}, "count": jnp.array(7.0)}


def test_round_trip(tmp_path):
    checkpoint.save(tmp_path / "ck", TREE)
    restored = checkpoint.restore(tmp_path / "ck", TREE)
    np.testing.assert_array_equal(restored["params"]["w"], TREE["params"]["w"])
    np.testing.assert_array_equal(restored["count"], 7.0)


def test_overwrite_replaces_whole_and_leaves_no_temporaries(tmp_path):
    checkpoint.save(tmp_path / "ck", TREE)
    newer = {**TREE, "count": jnp.array(8.0)}
    checkpoint.save(tmp_path / "ck", newer)
    assert float(checkpoint.restore(tmp_path / "ck", TREE)["count"]) == 8.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_truncated_checkpoint_is_refused_with_a_clear_message(tmp_path):
    path = checkpoint.save(tmp_path / "ck", TREE)
    for f in path.rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(UserError, match="corrupt or incomplete"):
        checkpoint.restore(path, TREE)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        checkpoint.restore(tmp_path / "nothing", TREE)


def test_shape_mismatch_is_refused(tmp_path):
    checkpoint.save(tmp_path / "ck", TREE)
    other = {**TREE, "params": {"w": jnp.zeros((3, 3)), "b": jnp.ones(3)}}
    with pytest.raises(UserError):
        checkpoint.restore(tmp_path / "ck", other)
