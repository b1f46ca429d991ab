"""Losses of the image-to-image family, as gan-compression's ``GANLoss`` / ``VGGLoss`` compute them,
and the 50-image pool of generated images that CycleGAN's discriminators learn from.

``gan_loss(pred, target_is_real, mode)``: ``pred`` is one logit map, a list of them (lsgan /
vanilla: the losses are **summed**), or the multi-scale discriminator's list of per-scale layer
lists (hinge: the last entry of each, **averaged** over scales). pix2pix and CycleGAN weight the
discriminator's real and fake terms by 0.5 (:func:`discriminator_loss`); GauGAN does not
(``weight=1``).
"""
from __future__ import annotations

from typing import Sequence, Union

import jax
import jax.numpy as jnp

Array = jax.Array
Pred = Union[Array, Sequence]
GAN_MODES = ('lsgan', 'vanilla', 'hinge')
VGG_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.)


def _check_mode(mode: str) -> None:
    if mode not in GAN_MODES:
        raise ValueError(f'gan_mode={mode!r} is not supported; expected one of {GAN_MODES}')


def _bce_with_logits(p: Array, target: float) -> Array:
    """``nn.BCEWithLogitsLoss`` (mean), in its stable form."""
    return jnp.mean(jnp.maximum(p, 0) - p * target + jnp.log1p(jnp.exp(-jnp.abs(p))))


def _hinge(p: Array, target_is_real: bool, for_discriminator: bool) -> Array:
    if not for_discriminator:
        if not target_is_real:
            raise ValueError('the generator\'s hinge loss is for target_is_real=True only')
        return -jnp.mean(p)
    return -jnp.mean(jnp.minimum((p if target_is_real else -p) - 1, 0))


def gan_loss(pred: Pred, target_is_real: bool, mode: str, for_discriminator: bool = True) -> Array:
    """gan-compression's ``GANLoss(mode)(pred, target_is_real, for_discriminator)``."""
    _check_mode(mode)
    if mode == 'hinge':
        if isinstance(pred, (list, tuple)):
            per = [_hinge(p[-1] if isinstance(p, (list, tuple)) else p, target_is_real, for_discriminator)
                   for p in pred]
            return sum(per) / len(per)
        return _hinge(pred, target_is_real, for_discriminator)
    preds = list(pred) if isinstance(pred, (list, tuple)) else [pred]
    if any(isinstance(p, (list, tuple)) for p in preds):
        raise ValueError(f'gan_mode={mode!r} takes logit maps (or a list of them), not per-layer lists; '
                         'pass the multi-scale discriminator\'s last outputs, or use gan_mode="hinge"')
    target = 1. if target_is_real else 0.
    if mode == 'lsgan':
        return sum(jnp.mean(jnp.square(p - target)) for p in preds)
    return sum(_bce_with_logits(p, target) for p in preds)


def discriminator_loss(real_pred: Pred, fake_pred: Pred, mode: str, weight: float = 0.5) -> Array:
    """``weight * (loss(real, True) + loss(fake, False))``: 0.5 in pix2pix / CycleGAN, 1 in GauGAN."""
    return weight * (gan_loss(real_pred, True, mode) + gan_loss(fake_pred, False, mode))


def feature_matching_loss(fake_outs: Sequence[Sequence[Array]], real_outs: Sequence[Sequence[Array]]) -> Array:
    """GauGAN's feature matching: L1 between the discriminator's intermediate outputs (all but the
    last of each scale) on fake and (constant) real inputs, averaged over scales."""
    num_d, total = len(fake_outs), 0.
    for fake, real in zip(fake_outs, real_outs):
        for f, r in zip(fake[:-1], real[:-1]):
            total = total + jnp.mean(jnp.abs(f - jax.lax.stop_gradient(r))) / num_d
    return total


def vgg_loss(vgg_apply, x: Array, y: Array) -> Array:
    """gan-compression's ``VGGLoss``: sum of ``VGG_WEIGHTS[i] * L1(vgg(x)[i], vgg(y)[i])`` over relu1_1 ..
    relu5_1, ``y`` a constant. ``vgg_apply(images)`` returns the five feature maps (e.g.
    ``functools.partial(VGG19().apply, variables)``)."""
    fx, fy = vgg_apply(x), vgg_apply(jax.lax.stop_gradient(y))
    return sum(w * jnp.mean(jnp.abs(a - jax.lax.stop_gradient(b))) for w, a, b in zip(VGG_WEIGHTS, fx, fy))


# --------------------------------------------------------------------------- image pool


def pool_init(size: int, image_shape: Sequence[int], dtype=jnp.float32) -> dict:
    """An empty pool of ``size`` images of ``image_shape`` (H, W, C); ``size`` 0: no pool."""
    if size < 0:
        raise ValueError(f'pool size {size} must be >= 0')
    return {'images': jnp.zeros((size, *image_shape), dtype), 'count': jnp.zeros((), jnp.int32)}


def pool_query(pool: dict, images: Array, rng: Array) -> tuple[Array, dict]:
    """The original ``ImagePool.query``, image by image: while the pool fills, each image is stored
    and returned; once full, with probability 1/2 a random stored image is returned and replaced
    by the new one, otherwise the new one is returned. Returns ``(images for D, new pool)``."""
    size = pool['images'].shape[0]
    if size == 0:
        return images, pool

    def one(carry, inputs):
        buf, count = carry
        image, key = inputs
        k_coin, k_idx = jax.random.split(key)
        full = count >= size
        swap = full & (jax.random.uniform(k_coin) > 0.5)
        idx = jnp.where(full, jax.random.randint(k_idx, (), 0, size), jnp.minimum(count, size - 1))
        out = jnp.where(swap, buf[idx], image)
        buf = jnp.where(swap | ~full, buf.at[idx].set(image), buf)
        return (buf, jnp.minimum(count + 1, size)), out

    keys = jax.random.split(rng, images.shape[0])
    (buf, count), out = jax.lax.scan(one, (pool['images'], pool['count']), (images.astype(pool['images'].dtype), keys))
    return out.astype(images.dtype), {'images': buf, 'count': count}
