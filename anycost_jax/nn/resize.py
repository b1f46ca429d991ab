"""Resizes shared by the losses, the encoder and projection: bilinear with ``align_corners=True``,
as the original's ``F.interpolate(..., mode='bilinear', align_corners=True)`` calls."""
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
