"""upfirdn2d: up-sample, FIR filter, down-sample; NHWC, pure lax.

``upfirdn2d(x, k, up, down, pad)`` inserts ``up - 1`` zeros after every pixel, pads by
``pad = (before, after)`` on both spatial axes (negative values crop), convolves every channel
with the 2-D kernel ``k`` (a true convolution: the kernel is flipped, as the original's
``make_kernel`` + correlation does) and keeps every ``down``-th pixel.
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


def upfirdn2d(x: jax.Array, kernel: np.ndarray, up: int = 1, down: int = 1, pad=(0, 0)) -> jax.Array:
    """Filters every channel of ``x`` [N, H, W, C] with the FIR ``kernel`` (static numpy)."""
    if x.ndim != 4:
        raise ValueError(f'upfirdn2d expects NHWC input, got shape {x.shape}')
    if up < 1 or down < 1:
        raise ValueError(f'up={up} and down={down} must be >= 1')
    p0, p1 = _check_pad(pad)
    kernel = np.asarray(kernel, np.float32)
    kh, kw = kernel.shape
    c = x.shape[-1]
    # Zero insertion and padding in one lax.pad: interior padding inserts the zeros; the
    # trailing up-1 zeros make the up-sampled length exactly H * up before the user's pad.
    zero = jnp.zeros((), x.dtype)
    x = lax.pad(x, zero, ((0, 0, 0), (p0, p1 + up - 1, up - 1), (p0, p1 + up - 1, up - 1), (0, 0, 0)))
    if x.shape[1] < kh or x.shape[2] < kw:
        raise ValueError(f'upfirdn2d: padded input {x.shape[1:3]} is smaller than the kernel {kernel.shape}')
    # Depthwise convolution with the flipped kernel; the stride does the down-sampling.
    w = jnp.asarray(kernel[::-1, ::-1].copy(), x.dtype)[:, :, None, None]
    w = jnp.broadcast_to(w, (kh, kw, 1, c))
    return lax.conv_general_dilated(x, w, window_strides=(down, down), padding='VALID',
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=c)


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
