"""CRD's content losses against the original code (tests/fixtures/make_crd_fixture.py): RKD row /
column / patch, VGG16 style and feature, values and gradients within 1e-4 relative."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anycost_jax.losses import crd

FIXTURE = os.path.join(os.path.dirname(__file__), 'fixtures', 'crd_expected.npz')


@pytest.fixture(scope='module')
def expected():
    return dict(np.load(FIXTURE))


def _term(term):
    if term in crd.GRANULARITIES:
        return lambda s, t: crd.relation_loss(s, t, term)
    index = {'style': 0, 'feature': 1}[term]
    return lambda s, t: crd.style_feature_losses(s, t)[index]


def _close(ours, ref, what):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert np.all(np.isfinite(ours)), what
    scale = np.abs(ref).max()
    err = np.abs(ours - ref).max() / scale
    assert err < 1e-4, f'{what}: max error {err:.2e} of the largest magnitude {scale:.3e}'


@pytest.mark.parametrize('case,term', [('rect', 'row'), ('rect', 'column'), ('rect', 'patch'),
                                       ('rect', 'style'), ('rect', 'feature'),
                                       ('flat', 'row'), ('flat', 'column'), ('flat', 'patch')])
def test_matches_original(expected, case, term):
    s, t = jnp.asarray(expected[f'{case}/student']), jnp.asarray(expected[f'{case}/teacher'])
    value, grad = jax.jit(jax.value_and_grad(_term(term)))(s, t)
    _close(value, expected[f'{case}/{term}'], f'{case} {term} value')
    _close(grad, expected[f'{case}/{term}_grad'], f'{case} {term} gradient')


def _angles_direct(e):
    """The original's way: normalized difference vectors [N, N, D], then their inner products."""
    d = e[None, :, :] - e[:, None, :]
    n = d / jnp.maximum(jnp.linalg.norm(d, axis=-1, keepdims=True), crd.EPS)
    return jnp.einsum('ijd,ikd->ijk', n, n)


def test_angle_identity_matches_difference_vectors():
    e = jax.random.normal(jax.random.key(0), (12, 40))
    e = e.at[5].set(e[3])  # a zero difference vector
    np.testing.assert_allclose(crd.angles(e), _angles_direct(e), atol=2e-6)
    assert float(crd.angles(e)[3, 5, 7]) == 0. and float(crd.angles(e)[3, 7, 5]) == 0.


def test_gradients_finite_at_zero_difference():
    """Identical items everywhere on one side: the original's normalization gives finite gradients."""
    s = jnp.ones((1, 32, 32, 3)) * 0.25
    t = jax.random.uniform(jax.random.key(1), (1, 32, 32, 3), minval=-1, maxval=1)
    for g in crd.GRANULARITIES:
        grad = jax.jit(jax.grad(lambda x: crd.relation_loss(x, t, g)))(s)
        assert bool(jnp.all(jnp.isfinite(grad))), g


def test_items_layout():
    x = jnp.arange(2 * 64 * 96 * 3, dtype=jnp.float32).reshape(2, 64, 96, 3)[0]
    assert crd.items(x, 'row').shape == (64, 96 * 3)
    assert crd.items(x, 'column').shape == (96, 64 * 3)
    p = crd.items(x, 'patch')
    assert p.shape == (6, 32 * 32 * 3)
    np.testing.assert_array_equal(p[1].reshape(32, 32, 3), x[:32, 32:64])  # raster order


def test_patch_larger_than_image_names_the_fix():
    x = jnp.zeros((1, 16, 16, 3))
    with pytest.raises(ValueError, match='larger than the 16x16'):
        crd.relation_loss(x, x, 'patch')
    with pytest.raises(ValueError, match='granularity'):
        crd.relation_loss(x, x, 'diagonal')


def test_batch_is_a_sum_of_images(expected):
    s, t = jnp.asarray(expected['rect/student']), jnp.asarray(expected['rect/teacher'])
    two = crd.relation_loss(jnp.concatenate([s, t]), jnp.concatenate([t, s]), 'row')
    np.testing.assert_allclose(two, crd.relation_loss(s, t, 'row') + crd.relation_loss(t, s, 'row'), rtol=1e-6)
