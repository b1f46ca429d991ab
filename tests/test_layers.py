"""The CPU forms of the convolutions (anycost_jax/xla_cpu.py) equal the plain XLA convolutions they
replace, forward and backward (they are rewrites for speed, not approximations)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from anycost_jax import xla_cpu
from anycost_jax.nn import layers


def _rel(a, b):
    return float(jnp.abs(a - b).max() / jnp.abs(b).max())


def _dilated_transpose(x, w):
    k = w.shape[0]
    return lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), [(k - 1, k - 1)] * 2, lhs_dilation=(2, 2),
                                    dimension_numbers=xla_cpu._DN)


@pytest.mark.parametrize('k', [2, 3, 4])
@pytest.mark.parametrize('hw', [(4, 4), (5, 7)])
def test_transposed_conv_phases_equal_the_dilated_convolution(k, hw):
    x = jax.random.normal(jax.random.key(0), (2, *hw, 6))
    w = jax.random.normal(jax.random.key(1), (k, k, 6, 5))
    want = _dilated_transpose(x, w)
    got = xla_cpu.conv_transpose2x_phases(x, w)
    assert got.shape == want.shape == (2, 2 * hw[0] + k - 2, 2 * hw[1] + k - 2, 5)
    assert _rel(got, want) < 1e-6
    # ... and so are both gradients (what the G step differentiates)
    g = jax.random.normal(jax.random.key(2), want.shape)
    vjp = lambda f: jax.vjp(f, x, w)[1](g)
    for ours, ref in zip(vjp(xla_cpu.conv_transpose2x_phases), vjp(_dilated_transpose)):
        assert _rel(ours, ref) < 1e-6
    # the public entry point takes the phase form on CPU and still computes the same
    assert _rel(layers._conv_transpose2x(x, w), want) < 1e-6


@pytest.mark.parametrize('shape', [(2, 8, 8, 6, 5), (1, 16, 16, 256, 256)])
def test_same_conv_cpu_forms_equal_the_plain_convolution(shape):
    n, h, wd, cin, cout = shape  # im2col at 8x8, Winograd at 16x16 with 256 channels
    x = jax.random.normal(jax.random.key(0), (n, h, wd, cin))
    w = jax.random.normal(jax.random.key(1), (3, 3, cin, cout)) / np.sqrt(9 * cin)
    want = lax.conv_general_dilated(x, w, (1, 1), [(1, 1)] * 2, dimension_numbers=xla_cpu._DN)
    assert _rel(layers._conv_same(x, w), want) < 1e-5

