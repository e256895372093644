import jax
import numpy as np

from rpg_jax import normalization


def test_running_statistics_equal_batch_statistics():
    data = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (5, 40, 3))) * [1.0, 5.0, 0.1] + [2.0, -1.0, 0.0]
    norm = normalization.init(3)
    for part in data:
        norm = normalization.update(norm, part)
    flat = data.reshape(-1, 3)
    np.testing.assert_allclose(norm.mean, flat.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.var, flat.var(0), rtol=1e-4)
    assert float(norm.count) == 200
    z = normalization.normalize(norm, flat)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)


def test_fresh_normalizer_is_the_identity():
    x = np.array([[0.5, -3.0, 20.0]])
    np.testing.assert_allclose(normalization.normalize(normalization.init(3), x), x)


def test_normalized_observations_are_clipped():
    norm = normalization.update(normalization.init(1), np.array([[-1.0], [1.0]]))
    np.testing.assert_allclose(normalization.normalize(norm, np.array([[50.0]])), [[normalization.CLIP]])
