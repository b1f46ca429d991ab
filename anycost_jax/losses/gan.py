"""GAN losses and regularizers, as the original StyleGAN2 / Anycost training code computes them.

Logistic D loss, non-saturating G loss, R1 as the per-sample squared gradient norm (summed
over pixels) averaged over the batch, and path length regularization with a running mean.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


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
