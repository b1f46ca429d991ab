"""Perceptual path length (PPL) in W, computed as the original ``metrics/ppl.py`` computes it.

Per batch of ``B`` pairs (the original's defaults: W space, endpoint sampling, ``eps = 1e-4``):

1. ``2B`` codes ``z ~ N(0, I)`` are mapped to ``w``; even rows are the start points ``w0``, odd
   rows the end points ``w1`` of ``B`` segments;
2. ``t = 0`` (``sampling='end'``; ``'full'`` draws ``t ~ U[0, 1)``) and the two images of a pair
   are rendered at ``lerp(w0, w1, t)`` and ``lerp(w0, w1, t + eps)``, each as one style for every
   layer (``input_is_style``), with ONE noise draw shared by the whole batch, so both images of a
   pair see the same noise (the original's ``g.make_noise()`` per batch);
3. images are clamped to [-1, 1], optionally center-cropped (``crop``: rows 3/8..7/8, columns
   2/8..6/8), and, when ``factor = H // 256 > 1``, shrunk by ``factor x factor`` box averaging
   (the TF reference's downsampling, not a bilinear resize);
4. ``d = LPIPS_VGG(img0, img1) / eps**2``.

The first ``n_sample`` distances are kept; values outside ``[p1, p99]`` (1st percentile with
``lower`` interpolation, 99th with ``higher``) are dropped and the rest averaged.

The finite difference at ``eps = 1e-4`` needs full float32 arithmetic: the generator and LPIPS
run under ``jax.default_matmul_precision('highest')`` by default (TF32 or bfloat16 matmuls,
as an accelerator's default precision may use, would swamp the difference).
"""
from __future__ import annotations

import contextlib
import functools
import math
import warnings
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from anycost_jax.models.generator import Generator
from anycost_jax.models import lpips as lpips_lib

Array = jax.Array
EPS = 1e-4
LOW_PERCENTILE, HIGH_PERCENTILE = 1, 99
BOX_RES = 256  # images above this are box-averaged down by the integer factor H // 256
SAMPLINGS = ('end', 'full')


def lerp(a: Array, b: Array, t: Array) -> Array:
    return a + (b - a) * t


def box_downsample(images: Array, factor: int) -> Array:
    """Averages non-overlapping ``factor x factor`` blocks of NHWC images."""
    n, h, w, c = images.shape
    if h % factor or w % factor:
        raise ValueError(f'box_downsample: {h}x{w} images are not divisible by factor {factor}')
    return images.reshape(n, h // factor, factor, w // factor, factor, c).mean((2, 4))


def prepare_images(images: Array, crop: bool = False) -> Array:
    """Clamp, optional center crop, and box averaging by ``H // 256`` when that exceeds 1."""
    images = jnp.clip(images, -1, 1)
    if crop:
        c = images.shape[1] // 8
        images = images[:, 3 * c:7 * c, 2 * c:6 * c]
    factor = images.shape[1] // BOX_RES
    if factor > 1:
        images = box_downsample(images, factor)
    return images


def filtered_mean(distances: np.ndarray, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE) -> float:
    """Mean of the distances between the ``low``-th (``lower``) and ``high``-th (``higher``) percentiles."""
    distances = np.asarray(distances, np.float64).reshape(-1)
    if distances.size == 0:
        raise ValueError('filtered_mean: no distances')
    lo = np.percentile(distances, low, method='lower')
    hi = np.percentile(distances, high, method='higher')
    return float(distances[(lo <= distances) & (distances <= hi)].mean())


def _pair_styles(w: Array, t: Array, eps: float) -> Array:
    """``[2B, D]`` codes: row ``2i`` at ``lerp(w0_i, w1_i, t_i)``, row ``2i + 1`` at ``t_i + eps``."""
    w0, w1 = w[::2], w[1::2]
    e0 = lerp(w0, w1, t[:, None])
    e1 = lerp(w0, w1, t[:, None] + eps)
    return jnp.stack([e0, e1], 1).reshape(w.shape)


def path_distances(style_fn: Callable, image_fn: Callable, params, style_dim: int, n_sample: int,
                   batch_size: int = 16, *, seed: int = 0, eps: float = EPS, sampling: str = 'end',
                   crop: bool = False, distance_fn: Optional[Callable[[Array, Array], Array]] = None,
                   precision: Optional[str] = 'highest', progress: bool = True,
                   desc: str = 'PPL') -> np.ndarray:
    """The ``n_sample`` scaled distances ``d / eps**2`` of any latent-to-image mapping.

    ``style_fn(params, z [2B, style_dim]) -> w [2B, D]``; ``image_fn(params, w [2B, D], key) ->
    images [2B, H, W, C]`` in [-1, 1] (``key`` is this batch's noise key: draw the noise once for
    the batch so both images of a pair share it); ``distance_fn(a, b) -> [N]`` (called outside
    ``jit``) defaults to LPIPS-VGG. One jitted rendering program serves every batch. Batch ``i`` uses
    ``jax.random.fold_in(jax.random.key(seed), i)``, so the result does not depend on how many
    batches run before it.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f'sampling={sampling!r} is not supported; expected one of {SAMPLINGS}')
    if int(n_sample) != n_sample or n_sample < 1 or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f'n_sample and batch_size must be positive integers, got {n_sample!r}, {batch_size!r}')
    if not eps > 0:
        raise ValueError(f'eps={eps!r} must be positive')
    distance = lpips_lib.lpips if distance_fn is None else distance_fn
    render = _render_program(style_fn, image_fn, int(batch_size), int(style_dim), float(eps), sampling, bool(crop))
    params = jax.device_put(params)  # once, not with every batch (they may be numpy)
    root = jax.random.key(seed)
    out = []
    with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
        for i in tqdm(range(math.ceil(n_sample / batch_size)), desc=desc, disable=not progress):
            a, b = render(params, jax.random.fold_in(root, i))
            d = jnp.asarray(distance(a, b)).reshape(batch_size)
            out.append(np.asarray(d / eps ** 2))
    return np.concatenate(out)[:n_sample]


@functools.lru_cache(maxsize=64)
def _render_program(style_fn, image_fn, batch_size, style_dim, eps, sampling, crop):
    """The jitted ``(params, key) -> (images at t, images at t + eps)`` of one batch (cached, so
    repeated measurements of one configuration do not trace again)."""
    def batch(params, key):
        k_z, k_t, k_noise = jax.random.split(key, 3)
        z = jax.random.normal(k_z, (2 * batch_size, style_dim))
        w = style_fn(params, z)
        t = jnp.zeros((batch_size,)) if sampling == 'end' else jax.random.uniform(k_t, (batch_size,))
        images = prepare_images(image_fn(params, _pair_styles(w, t, eps), k_noise), crop)
        return images[::2], images[1::2]
    return jax.jit(batch)


def draw_noise(gen: Generator, key: Array) -> list[Array]:
    """One noise map ``[1, h, w, 1]`` per noise input, shared by every image of a batch (``make_noise``)."""
    return [jax.random.normal(jax.random.fold_in(key, i), (1, *hw, 1)) for i, hw in enumerate(gen.noise_shapes())]


def ppl_distances(gen: Generator, variables: dict, n_sample: int = 100_000, batch_size: int = 16, *,
                  seed: int = 0, channel_ratio: Optional[float] = None, channels: Optional[Sequence[int]] = None,
                  target_res: Optional[int] = None, space: str = 'w', sampling: str = 'end', eps: float = EPS,
                  crop: bool = False, precision: Optional[str] = 'highest', progress: bool = True) -> np.ndarray:
    """The ``n_sample`` scaled LPIPS distances of a (sub-)generator (before percentile filtering).

    ``channel_ratio`` / ``channels`` / ``target_res`` pick the sub-generator as in
    ``Generator.__call__`` (static: the parameters are sliced). Only W space is supported, as in
    the original (its ``space='z'`` branch never builds the interpolated codes).
    """
    if space != 'w':
        raise ValueError(f"space={space!r} is not supported; only 'w' (the original's z branch is unimplemented)")
    gen.resolve_channels(channel_ratio, channels)  # validate before compiling anything
    res = gen.check_target_res(target_res)
    if crop:
        res = 4 * (res // 8)
    lpips_lib.check_resolution(res // max(1, res // BOX_RES), 'the PPL image')
    if getattr(gen, 'bf16_from_res', None) is not None:
        warnings.warn('PPL on a generator computing in bfloat16: eps=1e-4 steps are below bfloat16 resolution, '
                      'the distances measure rounding, not the path length')
    label = 'PPL' + (f' {channel_ratio}x' if channel_ratio is not None else ' flexible' if channels else '') + \
        (f'@{target_res}' if target_res else '')

    style_fn, image_fn = _generator_fns(gen, channel_ratio, None if channels is None else
                                        tuple(int(c) for c in channels), target_res)
    return path_distances(style_fn, image_fn, variables, gen.style_dim, n_sample, batch_size, seed=seed, eps=eps,
                          sampling=sampling, crop=crop, precision=precision, progress=progress, desc=label)


@functools.lru_cache(maxsize=64)
def _generator_fns(gen: Generator, channel_ratio, channels, target_res):
    def style_fn(v, z):
        return gen.apply(v, z, method=Generator.style)

    def image_fn(v, w, key):
        return gen.apply(v, w[:, None], input_is_style=True, channel_ratio=channel_ratio, channels=channels,
                         target_res=target_res, noise=draw_noise(gen, key))
    return style_fn, image_fn


def compute_ppl(gen: Generator, variables: dict, n_sample: int = 100_000, batch_size: int = 16, **kwargs) -> float:
    """PPL of a (sub-)generator: :func:`ppl_distances` filtered to the 1st-99th percentiles and averaged.

    The original's defaults: ``n_sample=100_000``, ``batch_size=16`` (per device), W space,
    ``sampling='end'``, ``eps=1e-4``, no crop.
    """
    return filtered_mean(ppl_distances(gen, variables, n_sample, batch_size, **kwargs))
