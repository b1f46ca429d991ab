"""Channel sorting: reorder every elastic layer's channels by importance, most important first.

Elastic sub-generators keep a *prefix* of each layer's channels, so before elastic training
(stage 2) the channels of a trained full generator are permuted so that the prefix holds the
channels that matter most. As in the original, the importance of an input channel of a
modulated conv is ``sum |W|`` over its outputs and kernel taps, times the mean ``|style|`` that
the modulation gives it over sampled w. Layers are walked from the top resolution down: the
order chosen for a layer's input fixes the output order of the layer feeding it. The mapping
network and the single-channel noise are untouched, so the full generator's output does not
change (up to float summation order).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from anycost_jax.elastic.core import importance_order, permute_axis
from anycost_jax.models.generator import Generator

ORIGINAL_SAMPLES = 100_000  # latents the original averages the style magnitude over


def _input_order(layer: dict, w: jax.Array) -> np.ndarray:
    """Input channels of a modulated conv ordered by importance (descending)."""
    kernel = layer['conv']['kernel']  # [kh, kw, in, out]
    mod = layer['conv']['modulation']
    fan_in = mod['kernel'].shape[0]
    style = w @ (mod['kernel'] / np.sqrt(fan_in)) + mod['bias']  # the modulation FC (lr_mul 1)
    return importance_order(jnp.sum(jnp.abs(kernel), axis=(0, 1, 3)) * jnp.abs(style).mean(0))


def _permute_input(layer: dict, idx: np.ndarray) -> dict:
    conv = layer['conv']
    mod = conv['modulation']
    conv = {**conv, 'kernel': permute_axis(conv['kernel'], idx, 2),
            'modulation': {'kernel': permute_axis(mod['kernel'], idx, 1), 'bias': permute_axis(mod['bias'], idx, 0)}}
    return {**layer, 'conv': conv}


def _permute_output(layer: dict, idx: np.ndarray) -> dict:
    conv = {**layer['conv'], 'kernel': permute_axis(layer['conv']['kernel'], idx, -1)}
    return {**layer, 'conv': conv, 'bias': permute_axis(layer['bias'], idx, 0)}


def sort_channels(gen: Generator, variables: dict, rng: jax.Array | None = None,
                  n_sample: int = ORIGINAL_SAMPLES, batch: int = 10_000, z: jax.Array | None = None) -> dict:
    """Returns ``variables`` with every elastic layer's channels sorted by importance.

    ``n_sample`` z are drawn from ``rng`` (or given as ``z`` [n, style_dim]) and mapped to w in
    chunks of ``batch``; the original uses 100k samples.
    """
    if gen.widths is not None or gen.output_res is not None:
        raise ValueError('sort_channels expects the full generator, not an exported sub-generator')
    if z is None:
        if rng is None or n_sample < 1:
            raise ValueError(f'sort_channels needs rng and n_sample >= 1 (got n_sample={n_sample}) or explicit z')
        z = jax.random.normal(rng, (n_sample, gen.style_dim))
    elif z.ndim != 2 or z.shape[1] != gen.style_dim:
        raise ValueError(f'z has shape {z.shape}; expected [n, {gen.style_dim}]')
    n_sample = z.shape[0]
    params = variables['params']
    mapping = jax.jit(lambda p, z: gen.apply({'params': p}, z, method=Generator.style))
    w = jnp.concatenate([mapping(params, z[i:i + batch]) for i in range(0, n_sample, batch)])

    p = dict(params)
    n_blocks = len(gen.output_resolutions) - 1
    order = None
    for b in reversed(range(n_blocks)):
        up, conv, rgb = f'convs_{2 * b}', f'convs_{2 * b + 1}', f'to_rgbs_{b}'
        if order is None:
            order = _input_order(p[rgb], w)
        p[rgb] = _permute_input(p[rgb], order)
        p[conv] = _permute_output(p[conv], order)
        order = _input_order(p[conv], w)
        p[conv] = _permute_input(p[conv], order)
        p[up] = _permute_output(p[up], order)
        order = _input_order(p[up], w)
        p[up] = _permute_input(p[up], order)
    if order is None:
        order = _input_order(p['to_rgb1'], w)
    p['to_rgb1'] = _permute_input(p['to_rgb1'], order)
    p['conv1'] = _permute_output(p['conv1'], order)
    order = _input_order(p['conv1'], w)
    p['conv1'] = _permute_input(p['conv1'], order)
    p['input'] = {'const': permute_axis(p['input']['const'], order, -1)}
    return {**variables, 'params': p}
