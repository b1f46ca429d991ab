"""LPIPS-VGG for the evaluation code: the training losses' network and weights
(:func:`anycost_jax.train.losses.lpips_vgg`), jitted on its own with the weights passed as an
argument, so one compiled program per image shape serves every metric and configuration.

On CPU the program is always compiled with XLA's default backend optimizations, even where
``XLA_FLAGS`` turns them off (as the test suite does for its small programs): VGG's
convolutions run about 4x slower unoptimized, which outweighs the extra compile time at once.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from anycost_jax.train import losses

# LPIPS-VGG pools four times; its fifth feature map is empty below 16x16 and the distance is NaN.
MIN_RES = 16


@jax.jit
def _lpips(params, a, b):
    module, _ = losses.lpips_vgg()
    return module.apply(params, a, b).reshape(a.shape[0])


def check_resolution(res: int, what: str = 'LPIPS input') -> None:
    if res < MIN_RES:
        raise ValueError(f'{what} is {res}x{res}; LPIPS-VGG needs at least {MIN_RES}x{MIN_RES} '
                         f'(it pools four times)')


_CPU_OPTIONS = {'xla_backend_optimization_level': 3, 'xla_llvm_disable_expensive_passes': False}


@functools.lru_cache(maxsize=None)
def _cpu_program(shape: tuple):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return _lpips.lower(losses.lpips_vgg()[1], x, x).compile(compiler_options=_CPU_OPTIONS)


def lpips(a, b) -> jax.Array:
    """Per-sample LPIPS-VGG distance [N] between NHWC images in [-1, 1] (same shape, >= 16x16)."""
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f'lpips: expected two NHWC batches of one shape, got {a.shape} and {b.shape}')
    check_resolution(min(a.shape[1:3]))
    params = losses.lpips_vgg()[1]
    if jax.default_backend() == 'cpu' and not isinstance(a, jax.core.Tracer):
        return _cpu_program(tuple(a.shape))(params, a, b)
    return _lpips(params, a, b)
