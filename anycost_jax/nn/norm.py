"""Instance and batch normalization with PyTorch's semantics, elastic in their width, NHWC.

Both are declared at full width and normalize whatever prefix of channels they are given
(sliced) or full-width inputs with zeroed dead channels (masked, with ``mask`` zeroing their
output). Statistics are computed in float32.

Batch norm keeps **full-width** running statistics whatever width runs: a narrower input
updates its live prefix from the batch and the rest as if those channels were zero, which is
what the original super-networks do by zero-padding a sub-width input to the full width
before normalizing. A masked input (dead channels zero) therefore updates the statistics
exactly as the sliced one does.
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from anycost_jax.nn import profile
from anycost_jax.nn.masks import apply_mask, live_in as _live_in, module_path as _path

Array = jax.Array
EPS = 1e-5


class InstanceNorm(nn.Module):
    """``nn.InstanceNorm2d(features, affine=affine)`` (no running statistics, as pix2pix uses it)."""
    features: int
    affine: bool = False
    eps: float = EPS

    @nn.compact
    def __call__(self, x: Array, mask: Optional[Array] = None) -> Array:
        c = _live_in(x, self.features, _path(self))
        x32 = x.astype(jnp.float32)
        mean = x32.mean(axis=(1, 2), keepdims=True)
        var = jnp.square(x32 - mean).mean(axis=(1, 2), keepdims=True)
        y = (x32 - mean) * lax.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.param('scale', nn.initializers.ones, (self.features,))[:c]
            y = y + self.param('bias', nn.initializers.zeros, (self.features,))[:c]
        profile.record('instance_norm', y.size, affine=self.affine, path=_path(self))
        # A zero channel normalizes to zero; only an affine bias needs the mask.
        return apply_mask(y.astype(x.dtype), mask if self.affine else None)


def _bn_scale_init(key, shape, dtype=jnp.float32):
    """pix2pix's ``init_weights``: BatchNorm weights ~ N(1, 0.02)."""
    return 1. + 0.02 * jax.random.normal(key, shape, dtype)


class BatchNorm(nn.Module):
    """``nn.BatchNorm2d(features, affine=affine, momentum=momentum)``.

    ``train=True`` normalizes with the batch's statistics (biased variance) and updates the
    running ones in the ``batch_stats`` collection (unbiased variance, as torch), which must
    then be mutable; ``train=False`` uses the running statistics. ``axis_name``: reduce the batch
    statistics over that mapped axis too (synchronized batch norm across devices). ``momentum``
    at call time overrides the field (1.0: the running statistics become this batch's, as the
    original's batch-norm calibration of a sub-network does).
    """
    features: int
    affine: bool = True
    momentum: float = 0.1
    eps: float = EPS
    axis_name: Optional[str] = None
    scale_init: callable = _bn_scale_init

    @nn.compact
    def __call__(self, x: Array, train: bool, mask: Optional[Array] = None,
                 momentum: Optional[float] = None) -> Array:
        c = _live_in(x, self.features, _path(self))
        ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (self.features,), jnp.float32)
        ra_var = self.variable('batch_stats', 'var', jnp.ones, (self.features,), jnp.float32)
        x32 = x.astype(jnp.float32)
        if train:
            mean = x32.mean(axis=(0, 1, 2))
            count = x.shape[0] * x.shape[1] * x.shape[2]
            if self.axis_name is not None:
                mean = lax.pmean(mean, self.axis_name)
            var = jnp.square(x32 - mean).mean(axis=(0, 1, 2))
            if self.axis_name is not None:
                var = lax.pmean(var, self.axis_name)
                count = count * lax.psum(1, self.axis_name)
            if not self.is_initializing():
                m = self.momentum if momentum is None else momentum
                unbiased = var * (count / max(count - 1, 1))
                # Channels beyond the live width count as zeros: mean and variance 0.
                pad = (0, self.features - c)
                ra_mean.value = (1 - m) * ra_mean.value + m * jnp.pad(mean, pad)
                ra_var.value = (1 - m) * ra_var.value + m * jnp.pad(unbiased, pad)
        else:
            mean, var = ra_mean.value[:c], ra_var.value[:c]
        y = (x32 - mean) * lax.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.param('scale', self.scale_init, (self.features,))[:c]
            y = y + self.param('bias', nn.initializers.zeros, (self.features,))[:c]
        profile.record('batch_norm', y.size, affine=self.affine, path=_path(self))
        return apply_mask(y.astype(x.dtype), mask)
