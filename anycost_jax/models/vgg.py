"""VGG19's convolutional trunk up to relu5_1 (torchvision's ``vgg19().features[:30]``), NHWC.

The perceptual loss of pix2pixHD / GauGAN / GAN Compression reads it at relu1_1, relu2_1,
relu3_1, relu4_1 and relu5_1. Its weights are the user's torchvision checkpoint
(``vgg19-dcbb9e9d.pth``), read without torch by :func:`anycost_jax.convert.load_vgg19`; the
images go in as they are (the original feeds [-1, 1] images without ImageNet normalization).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from anycost_jax.nn.conv import Conv2d

# torchvision's configuration 'E' up to relu5_1: conv widths, 'M' a 2x2 max pool
VGG19_LAYERS = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512)
# index in torchvision's ``features`` of each conv above, and of the ReLUs that end the slices
VGG19_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28)
SLICE_ENDS = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1


def _max_pool2x2(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')


class VGG19(nn.Module):
    """Returns the five slice outputs [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]."""

    @nn.compact
    def __call__(self, x: jax.Array) -> list:
        outs, cin, conv_i, index = [], x.shape[-1], 0, 0
        for layer in VGG19_LAYERS:
            if layer == 'M':
                x, index = _max_pool2x2(x), index + 1
                continue
            x = Conv2d(cin, layer, 3, padding=1, name=f'conv{VGG19_CONV_INDICES[conv_i]}')(x)
            x, cin, conv_i = nn.relu(x), layer, conv_i + 1
            index += 2  # the conv and its ReLU
            if index - 1 in SLICE_ENDS:
                outs.append(x)
        return outs
