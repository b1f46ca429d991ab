"""DRN-D segmenter (Yu, Koltun, Funkhouser, "Dilated Residual Networks", CVPR 2017) in Flax, NHWC.

The network GAN Compression scores Cityscapes generators with (its ``metric/drn.py`` and
``DRNSeg`` of ``metric/cityscapes_mIoU.py``, from fyu/drn): DRN-D-105, i.e.
``DRN(Bottleneck, [1, 1, 3, 4, 23, 3, 1, 1], arch='D')`` without its classifier, a 1x1 ``seg``
convolution to the classes, a fixed bilinear ``up`` (a depthwise transposed convolution: kernel 16,
stride 8, padding 4) back to the input size, and a log-softmax over the classes.

Structure (``channels`` c0..c7, ``layers`` n0..n7):

* ``layer0``: conv 7x7 (3 -> c0, pad 3) + BN + ReLU; ``layer1``: n0 x (conv 3x3 + BN + ReLU) at c0;
  ``layer2``: n1 of them at c1, the first with stride 2;
* ``layer3``, ``layer4``: bottleneck stages of widths c2, c3 (x4 out), stride 2 on the first
  block's 3x3 convolution (and its 1x1 shortcut);
* ``layer5``, ``layer6``: bottleneck stages of widths c4, c5 at dilation 2 and 4, stride 1 (these keep
  the output at 1/8 of the input: the "dilated" part);
* ``layer7``, ``layer8``: n6 / n7 x (conv 3x3 + BN + ReLU) at c6 (dilation 2) and c7 (dilation 1),
  no residual (DRN-D's degridding layers).

Padding equals dilation everywhere (torch's convolutions). A shortcut is a 1x1 conv + BN wherever
the stride is not 1 or the width changes (the original's rule). BatchNorm uses torch's eps 1e-5
in inference mode (running statistics). Module names follow the ``DRNSeg`` state-dict keys
(``base.5.0.conv1`` is ``base_5_0/conv1``, ``base.1.0`` / ``base.1.1`` (conv / BN) are ``base_1_0`` /
``base_1_1``), so :mod:`anycost_jax.convert.drn` maps one onto the other with a table.

Input: images NHWC, already normalized (the caller applies the Cityscapes mean / std, see
:mod:`anycost_jax.eval.segmentation`). Output: ``[N, 8 ceil(H / 8), 8 ceil(W / 8), classes]``
log-probabilities (three stride-2 stages, each rounding up, then ``up``'s x8): the input size
when it is a multiple of 8, as every generator output the mIoU scores.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

DRN_D_105_LAYERS = (1, 1, 3, 4, 23, 3, 1, 1)
DRN_CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
EXPANSION = 4
BN_EPS = 1e-5
CITYSCAPES_CLASSES = 19
UP_KERNEL, UP_STRIDE, UP_PADDING = 16, 8, 4


def bilinear_up_kernel(size: int = UP_KERNEL) -> np.ndarray:
    """The fixed [size, size] bilinear kernel ``fill_up_weights`` puts into every class of ``up``."""
    f = math.ceil(size / 2)
    c = (2 * f - 1 - f % 2) / (2. * f)
    r = 1 - np.abs(np.arange(size) / f - c)
    return np.outer(r, r).astype(np.float32)


def _bn(name: str):
    return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name=name)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride, dilation) -> 1x1 (x4) + shortcut, ReLU; the original's ``Bottleneck``."""
    planes: int
    stride: int = 1
    dilation: int = 1
    downsample: bool = False
    precision: Optional[str] = None

    @nn.compact
    def __call__(self, x):
        conv = lambda f, k, s, d, name: nn.Conv(f, (k, k), strides=s, padding=[(d * (k // 2),) * 2] * 2,
                                                kernel_dilation=d, use_bias=False, precision=self.precision,
                                                name=name)
        y = nn.relu(_bn('bn1')(conv(self.planes, 1, 1, 1, 'conv1')(x)))
        y = nn.relu(_bn('bn2')(conv(self.planes, 3, self.stride, self.dilation, 'conv2')(y)))
        y = _bn('bn3')(conv(self.planes * EXPANSION, 1, 1, 1, 'conv3')(y))
        if self.downsample:
            x = _bn('downsample_bn')(conv(self.planes * EXPANSION, 1, self.stride, 1, 'downsample_conv')(x))
        return nn.relu(y + x)


def drn_d_plan(layers: Sequence[int] = DRN_D_105_LAYERS, channels: Sequence[int] = DRN_CHANNELS) -> list:
    """The original's construction of a DRN-D with bottlenecks, unrolled: one entry per unit,
    ``('conv7' | 'conv', name, out, stride, dilation)`` (conv + BN + ReLU) or
    ``('block', name, planes, stride, dilation, downsample)``."""
    if len(layers) != 8 or len(channels) != 8:
        raise ValueError(f'DRN-D takes 8 layer counts and 8 widths, got {tuple(layers)} and {tuple(channels)}')
    if min(layers[:6]) < 1 or min(layers[6:]) < 0:
        raise ValueError(f'DRN-D needs at least one unit in layers 0..5 (layer6..7 may be 0), got {tuple(layers)}')
    plan, inplanes = [('conv7', 'base_0_0', channels[0], 1, 1)], channels[0]

    def convs(level, n, out, stride, dilation):
        for i in range(n):  # base.<level>.<3 i> is the conv, <3 i + 1> its BN
            plan.append(('conv', f'base_{level}_{3 * i}', out, stride if i == 0 else 1, dilation))
        return out

    def blocks(level, n, planes, stride, dilation):
        nonlocal inplanes
        for i in range(n):
            down = i == 0 and (stride != 1 or inplanes != planes * EXPANSION)
            plan.append(('block', f'base_{level}_{i}', planes, stride if i == 0 else 1, dilation, down))
            inplanes = planes * EXPANSION

    inplanes = convs(1, layers[0], channels[0], 1, 1)
    inplanes = convs(2, layers[1], channels[1], 2, 1)
    blocks(3, layers[2], channels[2], 2, 1)
    blocks(4, layers[3], channels[3], 2, 1)
    blocks(5, layers[4], channels[4], 1, 2)  # new_level=False: the first block is dilated too
    blocks(6, layers[5], channels[5], 1, 4)
    if layers[6]:
        convs(7, layers[6], channels[6], 1, 2)
    if layers[7]:
        convs(8, layers[7], channels[7], 1, 1)
    return plan


class DRNSeg(nn.Module):
    """DRN-D base + 1x1 ``seg`` + bilinear ``up`` + log-softmax: normalized images -> log-probabilities.

    ``return_logits``: also return the ``seg`` output at 1/8 (the original's second output).
    """
    classes: int = CITYSCAPES_CLASSES
    layers: Sequence[int] = DRN_D_105_LAYERS
    channels: Sequence[int] = DRN_CHANNELS
    precision: Optional[str] = None

    @nn.compact
    def __call__(self, x: Array, return_logits: bool = False):
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f'DRNSeg expects normalized NHWC RGB images [N, H, W, 3], got shape {x.shape}')
        for unit in drn_d_plan(self.layers, self.channels):
            kind, name = unit[0], unit[1]
            if kind == 'block':
                _, _, planes, stride, dilation, down = unit
                x = Bottleneck(planes, stride, dilation, down, self.precision, name=name)(x)
                continue
            _, _, out, stride, dilation = unit
            k, pad = (7, 3) if kind == 'conv7' else (3, dilation)
            x = nn.Conv(out, (k, k), strides=stride, padding=[(pad, pad), (pad, pad)], kernel_dilation=dilation,
                        use_bias=False, precision=self.precision, name=name)(x)
            level, index = name.rsplit('_', 1)  # torch: Sequential(conv, bn, relu): the BN is the next index
            x = nn.relu(_bn(f'{level}_{int(index) + 1}')(x))
        logits = nn.Conv(self.classes, (1, 1), precision=self.precision, name='seg')(x)
        up = self.param('up', lambda key, shape: jnp.broadcast_to(jnp.asarray(bilinear_up_kernel())[..., None, None],
                                                                  shape),
                        (UP_KERNEL, UP_KERNEL, 1, self.classes))
        y = upsample_transposed(logits, up, self.precision)
        out = jax.nn.log_softmax(y, axis=-1)
        return (out, logits) if return_logits else out


def upsample_transposed(x: Array, kernel: Array, precision=None) -> Array:
    """torch ``ConvTranspose2d(C, C, 16, stride=8, padding=4, groups=C, bias=False)`` on NHWC.

    ``kernel``: [16, 16, 1, C] (torch's [C, 1, 16, 16] moved to HWIO). A transposed convolution is the
    convolution of the stride-dilated input with the spatially flipped kernel, padded by
    ``k - 1 - padding`` on each side: the output is ``8 * H``.
    """
    pad = UP_KERNEL - 1 - UP_PADDING
    return jax.lax.conv_general_dilated(
        x, kernel[::-1, ::-1], window_strides=(1, 1), padding=[(pad, pad), (pad, pad)],
        lhs_dilation=(UP_STRIDE, UP_STRIDE), dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        feature_group_count=x.shape[-1], precision=precision)
