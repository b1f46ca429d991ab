"""Spectral normalization with ``torch.nn.utils.spectral_norm``'s semantics, for convolutions.

The kernel is stored unnormalized (torch's ``weight_orig``); the power-iteration vectors ``u``
(output channels) and ``v`` (input channels x kernel taps, in torch's ``[in, kh, kw]`` order)
live in the ``spectral`` collection (torch's ``weight_u`` / ``weight_v`` buffers). In train mode
one power iteration updates them (without gradient, as torch's ``no_grad`` iteration) before
``sigma = u . (W v)``; in eval mode the stored vectors give ``sigma``. The gradient flows
through ``W`` in ``sigma`` as in torch.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from anycost_jax.nn import profile
from anycost_jax.nn.conv import add_bias, conv_kernel, pix2pix_normal
from anycost_jax.nn.masks import module_path

Array = jax.Array
_DN = ('NHWC', 'HWIO', 'NHWC')
EPS = 1e-12  # torch's spectral_norm eps


def _normalize(x: Array) -> Array:
    return x / jnp.maximum(jnp.linalg.norm(x), EPS)


def _unit_normal(key, shape):
    return _normalize(jax.random.normal(key, shape, jnp.float32))


class SpectralConv2d(nn.Module):
    """``spectral_norm(nn.Conv2d(in_features, features, kernel_size, stride, padding, bias=use_bias))``
    at full width (a spectral norm of a sliced kernel is another network: no elastic widths)."""
    in_features: int
    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True
    kernel_init: Callable = pix2pix_normal()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        k = self.kernel_size
        if x.shape[-1] != self.in_features:
            raise ValueError(f'{module_path(self)}: a spectral-normalized conv runs at its full width '
                             f'{self.in_features}, got {x.shape[-1]} input channels')
        kernel = conv_kernel(self)
        u = self.variable('spectral', 'u', lambda: _unit_normal(self.make_rng('params'), (self.features,)))
        v = self.variable('spectral', 'v', lambda: _unit_normal(self.make_rng('params'), (self.in_features * k * k,)))
        mat = kernel.transpose(3, 2, 0, 1).reshape(self.features, -1)  # torch's weight_orig.view(out, -1)
        if train and not self.is_initializing():
            w = lax.stop_gradient(mat)
            new_v = _normalize(w.T @ u.value)
            new_u = _normalize(w @ new_v)
            u.value, v.value = new_u, new_v
        sigma = jnp.dot(u.value, mat @ v.value)
        y = lax.conv_general_dilated(x, (kernel / sigma).astype(x.dtype), (self.stride,) * 2,
                                     [(self.padding, self.padding)] * 2, dimension_numbers=_DN)
        y = add_bias(self, y)
        profile.record('conv', y.size, self.in_features * k * k, path=module_path(self))
        return y
