"""GAN losses and regularizers, as the original StyleGAN2 / Anycost training code computes them.

Logistic D loss, non-saturating G loss, R1 as the per-sample squared gradient norm (summed
over pixels) averaged over the batch, and path length regularization with a running mean.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def d_logistic_loss(real_logits: Array, fake_logits: Array) -> Array:
    return jax.nn.softplus(-real_logits).mean() + jax.nn.softplus(fake_logits).mean()


def g_nonsaturating_loss(fake_logits: Array) -> Array:
    return jax.nn.softplus(-fake_logits).mean()


def r1_penalty(apply: Callable[..., Array], params, real: Array, *args) -> Array:
    """Mean over the batch of ``|d sum(D(x)) / dx|^2`` (the original's ``d_r1_loss``), for
    ``D(x) = apply(params, x, *args)``; differentiable with respect to ``params`` only.

    Its gradient is taken forward-over-reverse (a JVP of the parameter gradient along the input
    gradient), not reverse-over-reverse as autodiff of the penalty would: the same value, but
    only the convolution forms of one backward pass, where the reverse-over-reverse program
    transposes weight-gradient convolutions, which XLA:CPU runs 2 to 3x slower
    (benchmarks/README.md, "R1"). ``real`` and ``args`` get zero cotangents.
    """
    return _r1(apply, params, real, *args)


def _input_grad(apply, params, real, args):
    return jax.grad(lambda x: apply(params, x, *args).sum())(real)


def _r1_value(grad: Array) -> Array:
    return jnp.square(grad).reshape(grad.shape[0], -1).sum(1).mean()


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _r1(apply, params, real, *args):
    return _r1_value(_input_grad(apply, params, real, args))


def _r1_fwd(apply, params, real, *args):
    grad = _input_grad(apply, params, real, args)
    return _r1_value(grad), (params, real, args, grad)


def _r1_bwd(apply, residuals, cotangent):
    params, real, args, grad = residuals
    # d/dparams mean_i |g_i|^2 = 2/N (dg/dparams)^T g, and (dg/dparams)^T g is the derivative of
    # the parameter gradient when the input moves along g (mixed partials commute).
    params_grad = lambda x: jax.grad(lambda p: apply(p, x, *args).sum())(params)
    _, hvp = jax.jvp(params_grad, (real,), (grad,))
    scale = cotangent * 2. / grad.shape[0]
    return (jax.tree.map(lambda h: (scale * h).astype(h.dtype), hvp), None) + (None,) * len(args)


_r1.defvjp(_r1_fwd, _r1_bwd)


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
