"""upfirdn2d: up-sample, FIR filter, down-sample; NHWC, pure lax.

``upfirdn2d(x, k, up, down, pad)`` inserts ``up - 1`` zeros after every pixel, pads by
``pad = (before, after)`` on both spatial axes (negative values crop), convolves every channel
with the 2-D kernel ``k`` (a true convolution: the kernel is flipped, as the original's
``make_kernel`` + correlation does) and keeps every ``down``-th pixel. The filter is a sum of
shifted (strided) slices, in two 1-D passes when the kernel is separable, which XLA fuses into
element-wise loops; it is not a depthwise convolution, which XLA CPU runs an order of magnitude
slower.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def make_kernel(k: Sequence[float] | np.ndarray) -> np.ndarray:
    """A normalized 2-D FIR kernel from a 1-D (separable, outer product) or 2-D spec."""
    k = np.asarray(k, np.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    if k.ndim != 2:
        raise ValueError(f'blur kernel must be 1-D or 2-D, got shape {k.shape}')
    return k / k.sum()


def _check_pad(pad) -> tuple[int, int]:
    if len(pad) != 2:
        raise ValueError(f'pad={pad!r} must be a pair (before, after)')
    return int(pad[0]), int(pad[1])


def _separable(kernel: np.ndarray):
    """``(ky, kx)`` with ``kernel == outer(ky, kx)`` when the kernel has rank one, else ``None``."""
    i, j = np.unravel_index(np.argmax(np.abs(kernel)), kernel.shape)
    if kernel[i, j] == 0:
        return None
    ky, kx = kernel[:, j] / kernel[i, j], kernel[i, :]
    return (ky, kx) if np.allclose(np.outer(ky, kx), kernel, rtol=1e-6, atol=1e-7) else None


def _fir(x: jax.Array, taps: np.ndarray, axes: tuple[int, ...], down: int) -> jax.Array:
    """Valid correlation of ``x`` with the static ``taps`` (ndim == len(axes)) along ``axes``, stride ``down``.

    Written as a sum of strided shifted slices rather than a depthwise convolution: XLA fuses it
    into one element-wise loop, where a grouped convolution takes a slow generic path on CPU.
    """
    n_out = [(x.shape[a] - t) // down + 1 for a, t in zip(axes, taps.shape)]
    out = None
    for offsets in np.ndindex(*taps.shape):
        c = float(taps[offsets])
        if c == 0:
            continue
        start, limit, strides = [0] * x.ndim, list(x.shape), [1] * x.ndim
        for a, o, n in zip(axes, offsets, n_out):
            start[a], limit[a], strides[a] = o, o + down * (n - 1) + 1, down
        term = lax.slice(x, start, limit, strides) * jnp.asarray(c, x.dtype)
        out = term if out is None else out + term
    if out is None:  # an all-zero kernel
        shape = list(x.shape)
        for a, n in zip(axes, n_out):
            shape[a] = n
        out = jnp.zeros(shape, x.dtype)
    return out


def upfirdn2d(x: jax.Array, kernel: np.ndarray, up: int = 1, down: int = 1, pad=(0, 0)) -> jax.Array:
    """Filters every channel of ``x`` [N, H, W, C] with the FIR ``kernel`` (static numpy)."""
    if x.ndim != 4:
        raise ValueError(f'upfirdn2d expects NHWC input, got shape {x.shape}')
    if up < 1 or down < 1:
        raise ValueError(f'up={up} and down={down} must be >= 1')
    p0, p1 = _check_pad(pad)
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim != 2:
        raise ValueError(f'upfirdn2d expects a 2-D kernel, got shape {kernel.shape}')
    kh, kw = kernel.shape
    # Zero insertion and padding in one lax.pad: interior padding inserts the zeros; the
    # trailing up-1 zeros make the up-sampled length exactly H * up before the user's pad.
    zero = jnp.zeros((), x.dtype)
    x = lax.pad(x, zero, ((0, 0, 0), (p0, p1 + up - 1, up - 1), (p0, p1 + up - 1, up - 1), (0, 0, 0)))
    if x.shape[1] < kh or x.shape[2] < kw:
        raise ValueError(f'upfirdn2d: padded input {x.shape[1:3]} is smaller than the kernel {kernel.shape}')
    # A true convolution: correlate with the flipped kernel; the stride does the down-sampling.
    flipped = kernel[::-1, ::-1]
    sep = _separable(flipped)
    if sep is None:
        return _fir(x, flipped, (1, 2), down)
    return _fir(_fir(x, sep[0], (1,), down), sep[1], (2,), down)


def upsample_pad(kernel_len: int, factor: int = 2) -> tuple[int, int]:
    """Padding that makes ``upfirdn2d(up=factor)`` map H to exactly ``factor * H``."""
    p = kernel_len - factor
    return (p + 1) // 2 + factor - 1, p // 2


def downsample_blur_pad(kernel_len: int, conv_size: int, factor: int = 2) -> tuple[int, int]:
    """Blur padding before a stride-``factor`` VALID convolution of size ``conv_size``."""
    p = (kernel_len - factor) + (conv_size - 1)
    return (p + 1) // 2, p // 2


def upconv_blur_pad(kernel_len: int, conv_size: int, factor: int = 2) -> tuple[int, int]:
    """Blur padding after a stride-``factor`` transposed convolution of size ``conv_size``."""
    p = (kernel_len - factor) - (conv_size - 1)
    return (p + 1) // 2 + factor - 1, p // 2 + 1
