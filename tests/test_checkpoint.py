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


def test_a_snapshot_of_another_structure_is_refused_naming_the_first_differing_path(tmp_path):
    saved = {"params": {"policy": jnp.arange(3.0), "value": jnp.ones(2)}, "step": jnp.asarray(4)}
    checkpoint.save_step(tmp_path, 1, saved)
    step, restored = checkpoint.restore_latest(tmp_path, saved)
    assert step == 1 and np.array_equal(restored["params"]["policy"], np.arange(3.0))

    renamed = {"params": {"critic": jnp.ones(2), "policy": jnp.arange(3.0)}, "step": jnp.asarray(0)}
    with pytest.raises(UserError, match=r"does not match this training state at \['params'\]\['critic'\]"):
        checkpoint.restore_latest(tmp_path, renamed)
    reshaped = {"params": {"policy": jnp.arange(4.0), "value": jnp.ones(2)}, "step": jnp.asarray(0)}
    with pytest.raises(UserError, match=r"at \['params'\]\['policy'\]: it holds .*float32\[3\]"):
        checkpoint.restore_latest(tmp_path, reshaped)
    extra = {**saved, "zeta": jnp.zeros(1)}
    with pytest.raises(UserError, match=r"at \['zeta'\]: it holds nothing"):
        checkpoint.restore_latest(tmp_path, extra)
    # A snapshot without the leaf list (an older format) is refused rather than filled slot by slot.
    (tmp_path / "step_000001" / checkpoint.MANIFEST).unlink()
    with pytest.raises(UserError, match="format version 0"):
        checkpoint.restore_latest(tmp_path, saved)
