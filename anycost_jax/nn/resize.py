"""Resizes with PyTorch's exact semantics: bilinear with ``align_corners=True`` (the losses, the
encoder and projection, as the original's ``F.interpolate(..., mode='bilinear', align_corners=True)``)
and nearest (SPADE's label maps, ``nn.Upsample(scale_factor=2)``)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


@functools.lru_cache(maxsize=None)
def _align_corners_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] linear interpolation weights of PyTorch's ``align_corners=True`` bilinear."""
    m = np.zeros((n_out, n_in), np.float32)
    if n_out == 1 or n_in == 1:
        m[:, 0] = 1
        return m
    # float32 positions, as PyTorch computes them, so the weights match it to the last bit.
    pos = np.arange(n_out, dtype=np.float32) * np.float32((n_in - 1) / (n_out - 1))
    lo = pos.astype(np.int64)
    frac = pos - lo.astype(np.float32)
    hi = np.minimum(lo + 1, n_in - 1)
    m[np.arange(n_out), lo] = np.float32(1) - frac
    m[np.arange(n_out), hi] += frac
    return m


def resize_align_corners(x: Array, size: int) -> Array:
    """Bilinear resize of NHWC images with ``align_corners=True`` semantics (two small matmuls)."""
    if x.shape[1] == size and x.shape[2] == size:
        return x
    my = jnp.asarray(_align_corners_matrix(x.shape[1], size), x.dtype)
    mx = jnp.asarray(_align_corners_matrix(x.shape[2], size), x.dtype)
    return jnp.einsum('oh,nhwc,pw->nopc', my, x, mx, precision=jax.lax.Precision.HIGHEST)


@functools.lru_cache(maxsize=None)
def torch_nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source rows of PyTorch's ``F.interpolate(mode='nearest', size=...)``: ``floor(dst * (in / out))``
    in float32, clamped to the last row (not the half-pixel centres ``jax.image.resize`` samples)."""
    if n_out == n_in:
        return np.arange(n_out)
    scale = np.float32(n_in) / np.float32(n_out)
    idx = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def resize_nearest(x: Array, size: tuple[int, int]) -> Array:
    """NHWC ``x`` resized to ``size`` (height, width) by PyTorch's nearest rule (a gather: no arithmetic,
    so label maps stay exact)."""
    h, w = size
    x = x if x.shape[1] == h else jnp.take(x, jnp.asarray(torch_nearest_indices(x.shape[1], h)), axis=1)
    return x if x.shape[2] == w else jnp.take(x, jnp.asarray(torch_nearest_indices(x.shape[2], w)), axis=2)


def upsample2x_nearest(x: Array) -> Array:
    """``nn.Upsample(scale_factor=2)`` (nearest) on NHWC ``x``."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
