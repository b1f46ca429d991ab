"""GAN Slimming's losses (VITA-Group/GAN-Slimming ``gs.py`` and ``utils/perceptual.py``).

The student's objective is ``beta * L_percep(G(x), G_T(x)) + MSE(D(G(x)), 1)`` (beta 20);
``L_percep`` is VGG16's content term (L1 at relu1_2) plus 1e5 times the style term (the MSE
between Gram matrices ``F F^T / (C H W)`` at relu1_2, relu2_2, relu3_3 and relu4_3), the images
mapped from [-1, 1] to [0, 1] with no ImageNet normalization. Its discriminator tells the
teacher's outputs (real) from the student's (fake, through an image pool):
``0.5 * [MSE(D(G_T(x)), 1) + MSE(D(G(x)), 0)]``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from anycost_jax.models import vgg as vgg_lib

Array = jax.Array
STYLE_WEIGHT = 1e5
CONTENT_LAYERS = ('relu1_2', 'relu2_2', 'relu3_3')


def vgg_features(variables: dict, img: Array) -> dict:
    """VGG16's features of NHWC images in [-1, 1] (the original's ``VGGFeature``: ``(x + 1) / 2``)."""
    return vgg_lib.VGG16().apply(variables, (img + 1.) / 2.)


def perceptual_loss(feats_a: dict, feats_b: dict, layer: str = 'relu1_2') -> tuple[Array, Array, Array]:
    """``(loss, content, style)`` as the original's ``perceptual_loss``: ``content + 1e5 * style``, content
    the L1 at ``layer``, style the sum over the four layers of the MSE between Gram matrices."""
    if layer not in CONTENT_LAYERS:
        raise ValueError(f'content layer {layer!r}: the original supports {CONTENT_LAYERS}')
    content = jnp.mean(jnp.abs(feats_a[layer].astype(jnp.float32) - feats_b[layer].astype(jnp.float32)))
    style = sum(jnp.mean(jnp.square(vgg_lib.gram_matrix(feats_a[k]) - vgg_lib.gram_matrix(feats_b[k])))
                for k in vgg_lib.VGG16_OUTPUTS)
    return content + STYLE_WEIGHT * style, content, style


def image_perceptual_loss(variables: dict, student: Array, teacher: Array) -> tuple[Array, Array, Array]:
    """:func:`perceptual_loss` between two NHWC image batches in [-1, 1]."""
    return perceptual_loss(vgg_features(variables, student), vgg_features(variables, teacher))


def mse_to(pred: Array, target: float) -> Array:
    """``nn.MSELoss()(pred, full_like(target))`` (the original's LSGAN terms)."""
    return jnp.mean(jnp.square(pred.astype(jnp.float32) - target))


def generator_loss(perceptual: Array, d_fake: Array, beta: float = 20.) -> Array:
    return beta * perceptual + mse_to(d_fake, 1.)


def discriminator_loss(d_teacher: Array, d_student_pool: Array) -> Array:
    return 0.5 * (mse_to(d_teacher, 1.) + mse_to(d_student_pool, 0.))
