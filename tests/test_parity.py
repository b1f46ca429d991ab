"""Parity with the original PyTorch implementation (see tests/parity.py for the reference data).

The fixtures were made by running the original code (native ops, CPU) on models whose parameters
were all drawn at random (biases, noise strengths and modulation biases non-zero), saving them with
torch.save and recording their outputs (``tests/fixtures/make_parity_fixture.py`` remakes them):
a 32x32 model (``original_tiny*``) and a 64x64 one (``original_64*``), whose outputs the original
also gave in float64. Tolerances: 1e-4 relative max error in float32; 1e-10 between our code and
the original both run in float64, which separates accumulation-order noise (float32 rounding:
~1e-6 here, more where the logits are small next to the terms they sum, as the max-relative
measure divides by the largest logit) from a real difference: on one 64 px case a wrong stddev
grouping moves the logits by 6e-3, a leaky-ReLU gain 1 % off by 4e-2, a blur pad shifted by one
pixel by 0.7, and even the stddev epsilon moved outside the square root (a 1e-8 change, lost in
float32 noise) by 4e-8 in float64 (``test_64px_fixture_catches_the_suspected_bugs``).
"""
import functools
import os
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anycost_jax.models import discriminator
from anycost_jax.nn import layers
from tests import parity

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')
PT, NPZ = os.path.join(FIX, 'original_tiny.pt'), os.path.join(FIX, 'original_tiny_expected.npz')
PT64, NPZ64 = os.path.join(FIX, 'original_64.pt'), os.path.join(FIX, 'original_64_expected.npz')
TOL = 1e-4
TOL_FLOAT64 = 1e-10
# A quick subset of the 64 px logits cases: every discriminator, every input resolution, every
# batch size (2, 3: one group of that size; 4; 8: two samples per stddev group).
D64_QUICK = (('d_plain', 8, 64), ('d_plain', 3, 64), ('d_multi', 4, 64), ('d_multi', 2, 16),
             ('d_mod', 8, 32), ('d_mod', 3, 16), ('d_mod', 2, 64), ('d_mod', 8, 16))


@pytest.fixture(autouse=True)
def _highest_precision():
    with jax.default_matmul_precision('highest'):
        yield


def _check(errors: dict, n_min: int, tol: float):
    assert len(errors) >= n_min, sorted(errors)
    bad = {k: e for k, e in errors.items() if e > tol}
    assert not bad, bad


@pytest.mark.slow
def test_generator_matches_original_every_width_and_resolution():
    errors = dict(parity.generator_errors(PT, NPZ))
    # 4 ratios x 4 targets (sliced, masked, intermediate rgbs) + flexible + mixing
    _check(errors, 41, TOL)


def test_discriminators_match_original_every_resolution():
    errors = dict(parity.discriminator_errors(PT, NPZ))
    assert {k.split()[0] for k in errors} == {'d_mod', 'd_multi', 'd_plain'}
    _check(errors, 21, TOL)


# ----------------------------------------------------------------------------- 64 px


def test_64px_discriminators_match_original_float32():
    _check(dict(parity.discriminator_errors(PT64, NPZ64, D64_QUICK)), len(D64_QUICK), TOL)


def test_64px_discriminators_match_original_float64():
    """In float64 on both sides the logits agree to rounding: no structural difference."""
    _check(dict(parity.discriminator_errors(PT64, NPZ64, D64_QUICK, x64=True)), len(D64_QUICK), TOL_FLOAT64)


def test_64px_generator_matches_original():
    errors = dict(parity.generator_errors(PT64, NPZ64, masked=False, keys=['u_1.0_64'], extras=False))
    _check(errors, 5, TOL)  # the output and the RGBs at 4, 8, 16, 32
    _check(dict(parity.generator_errors_float64(PT64, NPZ64)), 1, TOL_FLOAT64)


@pytest.mark.slow
def test_64px_every_case():
    """Every 64 px case: 28 logits (3 discriminators, batches 2, 3, 4, 8, 3 input resolutions) in
    float32 and float64, and every generator case (widths, early exits, masks, flexible widths,
    mixing, truncation, w+)."""
    ref_cases = len(parity.discriminator_cases(np.load(NPZ64)))
    assert ref_cases == 28
    _check(dict(parity.discriminator_errors(PT64, NPZ64)), ref_cases, TOL)
    _check(dict(parity.discriminator_errors(PT64, NPZ64, x64=True)), ref_cases, TOL_FLOAT64)
    _check(dict(parity.generator_errors(PT64, NPZ64)), 30, TOL)


def _stddev_in_consecutive_groups(x, group_size=4, n_feat=1):
    """The grouping the original does not use: groups of consecutive samples."""
    n, h, w, c = x.shape
    group = min(n, group_size)
    y = x.reshape(n // group, group, h, w, n_feat, c // n_feat)
    y = jnp.sqrt(jnp.var(y, axis=1) + 1e-8).mean(axis=(1, 2, 4))  # [n / group, n_feat]
    y = jnp.repeat(y, group, axis=0)[:, None, None, :]
    return jnp.concatenate([x, jnp.broadcast_to(y, (n, h, w, n_feat)).astype(x.dtype)], axis=-1)


def _epsilon_outside_sqrt(x, group_size=4, n_feat=1):
    """sqrt(var) + 1e-8 instead of sqrt(var + 1e-8): a 1e-8 change that only float64 can see."""
    n, h, w, c = x.shape
    group = min(n, group_size)
    y = x.reshape(group, n // group, h, w, n_feat, c // n_feat)
    y = (jnp.sqrt(jnp.var(y, axis=0)) + 1e-8).mean(axis=(1, 2, 4))
    y = jnp.tile(y[:, None, None, :], (group, h, w, 1))
    return jnp.concatenate([x, y.astype(x.dtype)], axis=-1)


def _shifted_pad(kernel_len, conv_size, factor=2):
    p = (kernel_len - factor) + (conv_size - 1)
    return (p + 1) // 2 + 1, p // 2 - 1


MUTANTS = {
    'stddev grouping': mock.patch.object(discriminator, 'minibatch_stddev', _stddev_in_consecutive_groups),
    'stddev epsilon': mock.patch.object(discriminator, 'minibatch_stddev', _epsilon_outside_sqrt),
    'leaky ReLU gain': mock.patch.object(layers, 'fused_leaky_relu',
                                         functools.partial(layers.fused_leaky_relu, scale=1.4)),
    'blur pad': mock.patch.object(layers, 'downsample_blur_pad', _shifted_pad),
}


@pytest.mark.parametrize('mutant', sorted(MUTANTS))
def test_64px_fixture_catches_the_suspected_bugs(mutant):
    """The float64 comparison fails for each candidate cause of a real difference (a batch of 8
    has two samples per stddev group, so the grouping shows), even one as small as 1e-8."""
    with MUTANTS[mutant]:
        (error,) = dict(parity.discriminator_errors(PT64, NPZ64, [('d_mod', 8, 32)], x64=True)).values()
    assert error > 100 * TOL_FLOAT64, error
