"""InceptionV3 for FID: pytorch-fid's network (``use_fid_inception=True``) in Flax, NHWC.

The FID Inception is the TensorFlow 2015-12-05 graph that every published FID uses. pytorch-fid
ports it as torchvision's ``Inception3`` with four patched block types; this module has exactly
that structure and the same parameter names, so the ported weights
(``pt_inception-2015-12-05-6726825d.pth``) load by name:

* every convolution is ``BasicConv2d``: conv without bias, BatchNorm (eps 0.001, inference mode:
  running statistics), ReLU;
* ``Mixed_5b..d`` (A), ``Mixed_6b..e`` (C) and ``Mixed_7b`` (E_1) average-pool their pool branch
  with ``count_include_pad=False`` (TensorFlow ignores the padded zeros), ``Mixed_7c`` (E_2)
  max-pools it instead -- both quirks of the TF graph;
* the output is the 2048-d global average pool after ``Mixed_7c`` (pytorch-fid's block 3).

Input: NHWC float images in [-1, 1], any size. As the Anycost original uses it
(``InceptionV3([3], normalize_input=False, resize_input=True)`` fed with images clamped to
[-1, 1]), the input is bilinearly resized to 299x299 (``align_corners=False``, no antialiasing,
like ``F.interpolate``) and is *not* rescaled: pytorch-fid's ``normalize_input`` maps [0, 1] to
[-1, 1], which our input already is.

Weights: :func:`anycost_jax.convert.inception.load_inception` reads the ported state dict.
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

__all__ = ['InceptionV3', 'resize_bilinear', 'FEATURE_DIM', 'INPUT_SIZE']

FEATURE_DIM = 2048
INPUT_SIZE = 299


# --------------------------------------------------------------------------- resizing


def _bilinear_taps(n_in: int, n_out: int):
    """Source rows and weights of torch's bilinear interpolation (align_corners=False, no antialias)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.)
    i0 = np.floor(src).astype(np.int32)
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0).astype(np.float32)
    return i0, i1, np.float32(1) - w1, w1


def _resize_axis(x, axis: int, size: int):
    n = x.shape[axis]
    if n == size:
        return x
    i0, i1, w0, w1 = _bilinear_taps(n, size)
    shape = [1] * x.ndim
    shape[axis] = size
    return (jnp.take(x, i0, axis=axis) * w0.reshape(shape) + jnp.take(x, i1, axis=axis) * w1.reshape(shape))


def resize_bilinear(x, size: int = INPUT_SIZE):
    """NHWC bilinear resize to ``size`` x ``size`` as ``F.interpolate(mode='bilinear', align_corners=False)``.

    No antialiasing when shrinking (pytorch-fid does not antialias either); a no-op at ``size``.
    """
    x = jnp.asarray(x, jnp.float32)
    return _resize_axis(_resize_axis(x, 1, size), 2, size)


# --------------------------------------------------------------------------- network


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, running statistics) -> ReLU."""
    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)
    precision: Optional[str] = 'highest'

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, self.kernel, strides=self.strides, use_bias=False,
                    padding=[(self.padding[0],) * 2, (self.padding[1],) * 2], precision=self.precision,
                    name='conv')(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name='bn')(x)
        return nn.relu(x)


def _avg_pool_3x3(x):
    # TF-style average: the padded positions are not counted (count_include_pad=False).
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


class FIDInceptionA(nn.Module):
    pool_features: int
    precision: Optional[str] = 'highest'

    @nn.compact
    def __call__(self, x):
        conv = lambda name, c, k, p=(0, 0): BasicConv2d(c, k, padding=p, precision=self.precision, name=name)
        b1 = conv('branch1x1', 64, (1, 1))(x)
        b5 = conv('branch5x5_2', 64, (5, 5), (2, 2))(conv('branch5x5_1', 48, (1, 1))(x))
        b3 = conv('branch3x3dbl_1', 64, (1, 1))(x)
        b3 = conv('branch3x3dbl_3', 96, (3, 3), (1, 1))(conv('branch3x3dbl_2', 96, (3, 3), (1, 1))(b3))
        bp = conv('branch_pool', self.pool_features, (1, 1))(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    precision: Optional[str] = 'highest'

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(384, (3, 3), strides=2, precision=self.precision, name='branch3x3')(x)
        bd = BasicConv2d(64, (1, 1), precision=self.precision, name='branch3x3dbl_1')(x)
        bd = BasicConv2d(96, (3, 3), padding=(1, 1), precision=self.precision, name='branch3x3dbl_2')(bd)
        bd = BasicConv2d(96, (3, 3), strides=2, precision=self.precision, name='branch3x3dbl_3')(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class FIDInceptionC(nn.Module):
    channels_7x7: int
    precision: Optional[str] = 'highest'

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        conv = lambda name, c, k, p=(0, 0): BasicConv2d(c, k, padding=p, precision=self.precision, name=name)
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding) of the factorized 7x7
        b1 = conv('branch1x1', 192, (1, 1))(x)
        b7 = conv('branch7x7_1', c7, (1, 1))(x)
        b7 = conv('branch7x7_2', c7, *row)(b7)
        b7 = conv('branch7x7_3', 192, *col)(b7)
        bd = conv('branch7x7dbl_1', c7, (1, 1))(x)
        bd = conv('branch7x7dbl_2', c7, *col)(bd)
        bd = conv('branch7x7dbl_3', c7, *row)(bd)
        bd = conv('branch7x7dbl_4', c7, *col)(bd)
        bd = conv('branch7x7dbl_5', 192, *row)(bd)
        bp = conv('branch_pool', 192, (1, 1))(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    precision: Optional[str] = 'highest'

    @nn.compact
    def __call__(self, x):
        conv = lambda name, c, k, s=1, p=(0, 0): BasicConv2d(c, k, strides=s, padding=p, precision=self.precision,
                                                              name=name)
        b3 = conv('branch3x3_2', 320, (3, 3), 2)(conv('branch3x3_1', 192, (1, 1))(x))
        b7 = conv('branch7x7x3_1', 192, (1, 1))(x)
        b7 = conv('branch7x7x3_2', 192, (1, 7), 1, (0, 3))(b7)
        b7 = conv('branch7x7x3_3', 192, (7, 1), 1, (3, 0))(b7)
        b7 = conv('branch7x7x3_4', 192, (3, 3), 2)(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class FIDInceptionE(nn.Module):
    """``FIDInceptionE_1`` (``max_pool=False``: average pool without padding) or ``_E_2`` (max pool)."""
    max_pool: bool
    precision: Optional[str] = 'highest'

    @nn.compact
    def __call__(self, x):
        conv = lambda name, c, k, p=(0, 0): BasicConv2d(c, k, padding=p, precision=self.precision, name=name)
        b1 = conv('branch1x1', 320, (1, 1))(x)
        b3 = conv('branch3x3_1', 384, (1, 1))(x)
        b3 = jnp.concatenate([conv('branch3x3_2a', 384, (1, 3), (0, 1))(b3),
                              conv('branch3x3_2b', 384, (3, 1), (1, 0))(b3)], axis=-1)
        bd = conv('branch3x3dbl_1', 448, (1, 1))(x)
        bd = conv('branch3x3dbl_2', 384, (3, 3), (1, 1))(bd)
        bd = jnp.concatenate([conv('branch3x3dbl_3a', 384, (1, 3), (0, 1))(bd),
                              conv('branch3x3dbl_3b', 384, (3, 1), (1, 0))(bd)], axis=-1)
        if self.max_pool:
            pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        else:
            pooled = _avg_pool_3x3(x)
        bp = conv('branch_pool', 192, (1, 1))(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """pytorch-fid's FID InceptionV3 up to the 2048-d pool3 features.

    ``__call__(x)``: NHWC float images in [-1, 1] (any size with ``resize_input``; at least 75
    pixels without) -> float32 ``[N, 2048]``. ``precision`` is that of every convolution;
    'highest' keeps float32 accuracy on accelerators (no TF32 / bf16 passes), so features do
    not depend on the device.
    """
    resize_input: bool = True
    precision: Optional[str] = 'highest'

    @nn.compact
    def __call__(self, x):
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f'expected NHWC RGB images [N, H, W, 3], got shape {x.shape}')
        if self.resize_input:
            x = resize_bilinear(x, INPUT_SIZE)
        p = self.precision
        # Block 0: stem up to the first max pool.
        x = BasicConv2d(32, (3, 3), strides=2, precision=p, name='Conv2d_1a_3x3')(x)
        x = BasicConv2d(32, (3, 3), precision=p, name='Conv2d_2a_3x3')(x)
        x = BasicConv2d(64, (3, 3), padding=(1, 1), precision=p, name='Conv2d_2b_3x3')(x)
        x = _max_pool_3x3_s2(x)
        # Block 1.
        x = BasicConv2d(80, (1, 1), precision=p, name='Conv2d_3b_1x1')(x)
        x = BasicConv2d(192, (3, 3), precision=p, name='Conv2d_4a_3x3')(x)
        x = _max_pool_3x3_s2(x)
        # Block 2.
        for name, pool in (('Mixed_5b', 32), ('Mixed_5c', 64), ('Mixed_5d', 64)):
            x = FIDInceptionA(pool, precision=p, name=name)(x)
        x = InceptionB(precision=p, name='Mixed_6a')(x)
        for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
            x = FIDInceptionC(c7, precision=p, name=name)(x)
        # Block 3 and the final average pool.
        x = InceptionD(precision=p, name='Mixed_7a')(x)
        x = FIDInceptionE(max_pool=False, precision=p, name='Mixed_7b')(x)
        x = FIDInceptionE(max_pool=True, precision=p, name='Mixed_7c')(x)
        return jnp.mean(x, axis=(1, 2))
