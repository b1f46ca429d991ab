"""torchvision's ResNet-50 (v1.5) in Flax linen, NHWC, with torchvision's parameter layout.

Structure, exactly as ``torchvision.models.resnet50``: conv 7x7/2 (pad 3, no bias), BatchNorm,
ReLU, max-pool 3x3/2 (pad 1), four stages of bottleneck blocks ([3, 4, 6, 3] blocks of widths
64, 128, 256, 512, expansion 4), global average pool, and an optional fully connected head.
"v1.5": a stage's stride sits on the 3x3 convolution of its first block (not on the 1x1), and
that block's shortcut is a strided 1x1 convolution + BatchNorm.

BatchNorm uses torchvision's epsilon (1e-5) and momentum (0.1, i.e. Flax ``momentum=0.9``).
``train=False`` (the default) normalizes with the running statistics in the ``batch_stats``
collection; ``train=True`` uses the batch statistics and updates ``batch_stats`` (pass
``mutable=['batch_stats']``). One difference in training mode only: Flax updates the running
variance with the biased batch variance, torch with the unbiased one.

Module names follow the torchvision state-dict keys (``layer1.0.conv1`` is ``layer1_0/conv1``,
``layer1.0.downsample.0`` is ``layer1_0/downsample_conv``), so
:mod:`anycost_jax.convert.resnet` maps one onto the other with a table.
``stage_sizes`` and ``width`` shrink the network (tests use ``(1, 1, 1, 1)`` and 8); the
defaults are ResNet-50.
"""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
RESNET50_STAGES = (3, 4, 6, 3)
EXPANSION = 4  # bottleneck output channels / inner channels
BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # torch momentum 0.1


def _batch_norm(train: bool, name: str, scale_init=nn.initializers.ones):
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPS,
                        scale_init=scale_init, name=name)


# torchvision's initialization: He normal (fan_out) for convolutions, BN scale 1 and bias 0.
_CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 with a residual; ``downsample``: a 1x1 conv + BN shortcut."""
    features: int
    strides: int = 1
    downsample: bool = False
    precision: Optional[str] = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        conv = lambda f, k, s, p, name: nn.Conv(f, (k, k), strides=s, padding=[(p, p), (p, p)], use_bias=False,
                                                kernel_init=_CONV_INIT, precision=self.precision, name=name)
        y = nn.relu(_batch_norm(train, 'bn1')(conv(self.features, 1, 1, 0, 'conv1')(x)))
        y = nn.relu(_batch_norm(train, 'bn2')(conv(self.features, 3, self.strides, 1, 'conv2')(y)))
        y = _batch_norm(train, 'bn3')(conv(self.features * EXPANSION, 1, 1, 0, 'conv3')(y))
        if self.downsample:
            x = _batch_norm(train, 'downsample_bn')(
                conv(self.features * EXPANSION, 1, self.strides, 0, 'downsample_conv')(x))
        return nn.relu(y + x)


class ResNet50(nn.Module):
    """torchvision ResNet-50: images NHWC -> logits ``[N, num_outputs]`` (or the 2048-d pooled
    features when ``num_outputs`` is None). No input normalization is applied here."""
    num_outputs: Optional[int] = 1000
    stage_sizes: Sequence[int] = RESNET50_STAGES
    width: int = 64
    precision: Optional[str] = None

    @property
    def feature_dim(self) -> int:
        return self.width * 2 ** (len(self.stage_sizes) - 1) * EXPANSION

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f'ResNet50 expects NHWC RGB images [N, H, W, 3], got shape {x.shape}')
        x = nn.Conv(self.width, (7, 7), strides=2, padding=[(3, 3), (3, 3)], use_bias=False, kernel_init=_CONV_INIT,
                    precision=self.precision, name='conv1')(x)
        x = nn.relu(_batch_norm(train, 'bn1')(x))
        # torch pads max-pooling with -inf, as nn.max_pool does.
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        in_features = self.width
        for i, n_blocks in enumerate(self.stage_sizes):
            features = self.width * 2 ** i
            for j in range(n_blocks):
                strides = 2 if i > 0 and j == 0 else 1
                downsample = j == 0 and (strides != 1 or in_features != features * EXPANSION)
                x = Bottleneck(features, strides, downsample, self.precision, name=f'layer{i + 1}_{j}')(x, train)
                in_features = features * EXPANSION
        x = x.mean(axis=(1, 2))
        if self.num_outputs is None:
            return x
        bound = 1. / self.feature_dim ** 0.5  # torch.nn.Linear's default initialization
        init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
        return nn.Dense(self.num_outputs, kernel_init=init, bias_init=init, precision=self.precision, name='fc')(x)
