import jax
import jax.numpy as jnp
import numpy as np

from rpg_jax import replay

EXAMPLE = {"obs": jnp.zeros(2), "termination": jnp.zeros(()), "truncation": jnp.zeros(())}


def batch(start, n):
    values = jnp.arange(start, start + n, dtype=jnp.float32)
    return {"obs": jnp.stack([values, -values], 1), "termination": values, "truncation": values + 0.5}


def test_wrap_around_overwrites_the_oldest():
    buf = replay.init(5, EXAMPLE)
    buf = replay.add(buf, batch(0, 3))
    buf = replay.add(buf, batch(3, 4))  # 3, 4 fill the end; 5, 6 overwrite slots 0, 1
    np.testing.assert_array_equal(buf.data["termination"], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buf.data["truncation"], [5.5, 6.5, 2.5, 3.5, 4.5])
    np.testing.assert_array_equal(buf.data["obs"][:, 1], [-5, -6, -2, -3, -4])
    assert int(buf.position) == 2 and int(buf.size) == 5


def test_wrap_around_under_vmap_equals_each_member():
    members = 3
    bufs = jax.vmap(lambda _: replay.init(5, EXAMPLE))(jnp.arange(members))
    add = jax.jit(jax.vmap(replay.add))
    for start in (0, 4, 8):
        stacked = jax.tree.map(lambda *x: jnp.stack(x), *[batch(start + 100 * m, 4) for m in range(members)])
        bufs = add(bufs, stacked)
    for m in range(members):
        single = replay.init(5, EXAMPLE)
        for start in (0, 4, 8):
            single = replay.add(single, batch(start + 100 * m, 4))
        np.testing.assert_array_equal(bufs.data["termination"][m], single.data["termination"])
    np.testing.assert_array_equal(bufs.position, [2, 2, 2])
    np.testing.assert_array_equal(bufs.size, [5, 5, 5])


def test_sample_draws_only_filled_slots():
    buf = replay.add(replay.init(100, EXAMPLE), batch(1, 7))
    drawn = replay.sample(buf, jax.random.PRNGKey(0), 1000)
    values = np.asarray(drawn["termination"])
    assert set(values.tolist()) == set(range(1, 8))
    np.testing.assert_array_equal(drawn["truncation"], values + 0.5)  # fields stay aligned
