"""Projection: optimise a w+ latent so the generator reconstructs target images.

The semantics are the original's ``tools/project.py``:
* the latent is w+ ``[N, n_style, style_dim]``; the noise is the stored constant noise and is
  not optimised (edits move poorly through optimised noise);
* the loss summed over the batch (so the step size does not depend on the batch size) is, per
  image, LPIPS-VGG on both images resized (bilinear, ``align_corners=True``) to
  ``min(lpips_res, generator resolution)``, plus ``mse_weight`` x the pixel MSE at the output's
  resolution, plus ``encoder_reg_weight`` x the MSE between w+ and the encoder's prediction for
  the target (arXiv:2004.00049's in-domain regulariser); ``lpips_weight`` (ours, default 1)
  scales LPIPS, and 0 leaves VGG out of the program (a fast pixel-only projection);
* initialisation: the mean w over 10000 z repeated over the layers, or the encoder's
  prediction, or a given w+;
* optimisers: L-BFGS (the original's default; lr 1 as the line search's first trial step, a
  memory of 10 pairs and at most 10 line-search evaluations) or Adam (lr 0.001). L-BFGS uses
  ``optax.lbfgs`` with its strong-Wolfe zoom line search in place of the original's
  ``FullBatchLBFGS`` (Armijo-Wolfe bracketing); like the original, the L-BFGS objective sees the
  image clamped to [-1, 1] and the Adam one the unclamped image;
* ``random_subgenerators``: each step renders a random sub-generator (a width drawn as in
  training, uniform ratios by default, and one of the three highest resolutions, the
  original's 256/512/1024 at 1024), so the latent suits every preview the editor may show.
  The original re-draws inside every L-BFGS closure call; here one draw holds for a whole step
  (its line search included), which keeps the line search on one objective.

Targets must already be at the generator's resolution: NHWC float in [-1, 1]. We do not resize
silently; :func:`load_image` reads, centre-crops and antialias-resizes a file to that size.

One compiled step serves every step and every call with the same shapes and settings: the
sampled sub-generator is data (channel masks and a ``lax.switch`` over resolutions), never
structure.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from anycost_jax import elastic
from anycost_jax.models import generator as generator_lib
from anycost_jax.models.generator import Generator
from anycost_jax import xla_cpu
from anycost_jax.models import lpips as lpips_lib
from anycost_jax.nn.resize import resize_align_corners

OPTIMIZERS = ('lbfgs', 'adam')
DEFAULT_LR = {'lbfgs': 1.0, 'adam': 0.001}   # the original's
LBFGS_MEMORY = 10                            # FullBatchLBFGS history_size
LBFGS_MAX_LINESEARCH = 10                    # the original's max_ls
ENCODER_RES = 256                            # the encoder reads targets resized to 256
N_SUBGENERATOR_RES = 3                       # the original draws from 256, 512, 1024 (of the trained ones)
SUBGENERATOR_MODES = elastic.SAMPLING_MODES


@dataclasses.dataclass
class ProjectionResult:
    """``w_plus`` [N, n_style, style_dim] float32; ``images`` the full generator's rendering of
    it, NHWC in [-1, 1]; ``losses`` one dict per evaluation (``losses[0]`` at the initial latent,
    ``losses[i]`` before step i+1's update, the last one at the returned latent), with per-image
    averages of the weighted terms ``lpips``, ``mse``, ``encoder`` and their sum ``loss``. With
    random sub-generators, each step's entry is measured on that step's sub-generator and the
    last on the full generator."""
    w_plus: np.ndarray
    images: np.ndarray
    losses: list[dict[str, float]]


# --------------------------------------------------------------------------- images


def load_image(path: str, resolution: int) -> np.ndarray:
    """An image file as float32 [resolution, resolution, 3] in [-1, 1]: RGB, the largest centred
    square crop, resized with an antialiasing (Lanczos) filter."""
    with Image.open(path) as im:
        im = im.convert('RGB')
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
        if s != resolution:
            im = im.resize((resolution, resolution), Image.LANCZOS)
        return np.asarray(im, np.float32) / 127.5 - 1


def load_images(paths: Sequence[str], resolution: int,
                warn: Callable[[str], Any] = lambda m: print(m, file=sys.stderr, flush=True)) -> dict[str, np.ndarray]:
    """``{path: image}`` (:func:`load_image`) of the readable ``paths``; the unreadable ones are
    skipped and counted in one ``warn``, so one bad file does not cost the batch. Raises
    ``ValueError`` if none is readable."""
    images, bad = {}, {}
    for path in paths:
        try:
            images[path] = load_image(path, resolution)
        except (OSError, ValueError, Image.DecompressionBombError) as e:  # not an image, truncated, too large
            bad[path] = e
    if bad:
        first, error = next(iter(bad.items()))
        what = f'{first!r} is not an image PIL can read ({error})'
        if not images:
            raise ValueError(f'{what}; pass .png / .jpg images' if len(bad) == 1 else
                             f'none of the {len(bad)} images can be read: {what}')
        more = f' and {len(bad) - 1} more' if len(bad) > 1 else ''
        warn(f'warning: skipped {len(bad)} of {len(paths)} images that cannot be read: {what}{more}')
    return images


def check_targets(targets, resolution: int) -> np.ndarray:
    """Validates a target batch: float NHWC [N, resolution, resolution, 3] in [-1, 1]."""
    x = np.asarray(targets)
    if x.ndim != 4 or x.shape[-1] != 3:
        hint = ' (one image? add a batch axis: x[None])' if x.ndim == 3 else ''
        raise ValueError(f'targets must be NHWC RGB images [N, {resolution}, {resolution}, 3], got shape '
                         f'{x.shape}{hint}')
    if x.shape[1:3] != (resolution, resolution):
        raise ValueError(f'targets are {x.shape[1]}x{x.shape[2]} but the generator renders {resolution}x'
                         f'{resolution}; resize them first, e.g. projection.load_image(path, {resolution})')
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f'targets have dtype {x.dtype}; expected floats in [-1, 1] (uint8 images: x / 127.5 - 1)')
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.01 or hi > 1.01 or not np.isfinite(x).all():
        raise ValueError(f'targets range over [{lo:.3g}, {hi:.3g}]; expected finite values in [-1, 1] '
                         f'(images in [0, 1]: x * 2 - 1; in [0, 255]: x / 127.5 - 1)')
    return x.astype(np.float32)


# --------------------------------------------------------------------------- the compiled problem


@dataclasses.dataclass(frozen=True)
class _Setup:
    """Everything static about a projection: one compiled step per distinct value."""
    gen: Generator
    optimizer: str
    lr: float
    lpips_res: int
    use_lpips: bool                       # False: no VGG in the program at all (lpips_weight=0)
    subgen_mode: Optional[str]            # None: the full generator every step
    subgen_res: tuple[int, ...]           # resolutions a random sub-generator may render


def _render(setup: _Setup, gvars, w, widths, res: int, clamp: bool):
    img = setup.gen.apply(gvars, w, input_is_style=True, channel_masks=widths, target_res=res, noise_mode='const')
    return jnp.clip(img, -1, 1) if clamp else img


def _loss_terms(setup: _Setup, img, w, data):
    """Per-image terms: weighted [N] arrays of LPIPS, MSE and the encoder regulariser."""
    targets, enc_w, gvars, lpips_params, weights = data
    resize = resize_align_corners
    lp = jnp.zeros(img.shape[:1])
    if setup.use_lpips:
        module, _ = lpips_lib.vgg()
        lp = module.apply(lpips_params, resize(img, setup.lpips_res), resize(targets, setup.lpips_res)).reshape(-1)
    mse = jnp.mean(jnp.square(img - resize(targets, img.shape[1])), axis=(1, 2, 3))
    enc = jnp.mean(jnp.square(w - enc_w), axis=(1, 2))
    return {'lpips': weights[0] * lp, 'mse': weights[1] * mse, 'encoder': weights[2] * enc}


def _objective(setup: _Setup, w, key, data, clamp: bool):
    """The summed loss and per-image-mean terms, on the full or a randomly drawn sub-generator."""
    gvars = data[2]

    def at_res(res, widths):
        terms = _loss_terms(setup, _render(setup, gvars, w, widths, res, clamp), w, data)
        return {k: v.sum() for k, v in terms.items()}

    if setup.subgen_mode is None:
        sums = at_res(setup.gen.top_res, None)
    else:
        k_width, k_res = jax.random.split(key)
        widths, _ = elastic.sample(k_width, setup.gen.resolution, setup.gen.full_channels(), setup.subgen_mode)
        branches = [functools.partial(at_res, r) for r in setup.subgen_res]
        idx = jax.random.randint(k_res, (), 0, len(branches))
        sums = jax.lax.switch(idx, branches, widths)  # only the drawn resolution runs
    total = sums['lpips'] + sums['mse'] + sums['encoder']
    n = w.shape[0]
    return total, {**{k: v / n for k, v in sums.items()}, 'loss': total / n}


def _make_optimizer(setup: _Setup):
    if setup.optimizer == 'adam':
        return optax.adam(setup.lr)
    # The direction is scaled by lr and the line search's first trial is a step of 1 along it:
    # the original's FullBatchLBFGS(lr=1) starts its line search the same way.
    ls = optax.scale_by_zoom_linesearch(max_linesearch_steps=LBFGS_MAX_LINESEARCH, initial_guess_strategy='one')
    return optax.lbfgs(learning_rate=setup.lr, memory_size=LBFGS_MEMORY, linesearch=ls)


@functools.lru_cache(maxsize=16)
def _programs(setup: _Setup):
    """Jitted ``(init, step, evaluate)`` for one setup; cached so repeated calls compile nothing."""
    opt = _make_optimizer(setup)
    clamp = setup.optimizer == 'lbfgs'  # as the original (its L-BFGS closure clamps, its Adam loop does not)

    def value_fn(w, key, data):  # the line search's objective: scalar only, names match update's kwargs
        return _objective(setup, w, key, data, clamp)[0]

    def step(w, opt_state, seed_key, i, data):
        key = jax.random.fold_in(seed_key, i)  # in the program: no host-side key arrays to slice per step
        (value, terms), grad = jax.value_and_grad(
            lambda w_: _objective(setup, w_, key, data, clamp), has_aux=True)(w)
        if setup.optimizer == 'adam':
            updates, opt_state = opt.update(grad, opt_state, w)
        else:
            updates, opt_state = opt.update(grad, opt_state, w, value=value, grad=grad, value_fn=value_fn,
                                            key=key, data=data)
        return optax.apply_updates(w, updates), opt_state, terms

    def evaluate(w, data):  # the full generator, whatever the step draws
        full = dataclasses.replace(setup, subgen_mode=None)
        _, terms = _objective(full, w, None, data, clamp)
        return terms, _render(full, data[2], w, None, setup.gen.top_res, True)

    # VGG runs several times slower unoptimised; on CPU compile with XLA's optimisations even where
    # XLA_FLAGS turn them off (anycost_jax.xla_cpu).
    options = xla_cpu.optimized_options()
    return (jax.jit(opt.init), jax.jit(step, compiler_options=options),
            jax.jit(evaluate, compiler_options=options))


# --------------------------------------------------------------------------- initialisation


@functools.lru_cache(maxsize=8)
def _jitted_apply(module):
    return jax.jit(module.apply)


def _mean_w(gen: Generator, variables: dict) -> jax.Array:
    # Key 0, as load_generator: the start must not depend on the projection's seed.
    return generator_lib.mean_w(gen, variables)


def _encoder_w(encoder, targets: np.ndarray, shape: tuple) -> jax.Array:
    try:
        module, enc_vars = encoder
    except (TypeError, ValueError):
        raise TypeError('encoder must be a (module, variables) pair whose module.apply(variables, images) maps '
                        f'[N, {ENCODER_RES}, {ENCODER_RES}, 3] images in [-1, 1] to w+') from None
    # Our encoders may be trained at another input size (encoder_training.input_size_for).
    x = resize_align_corners(jnp.asarray(targets), int(getattr(module, 'input_size', ENCODER_RES)))
    w = jnp.asarray(_jitted_apply(module)(enc_vars, x), jnp.float32)
    if w.shape != shape:
        raise ValueError(f'the encoder returned shape {w.shape}; the generator needs w+ of shape {shape} '
                         f'([N, n_style, style_dim]): is it the encoder of this generator?')
    return w


def _initial_w(gen, variables, init, enc_w, shape) -> jax.Array:
    if init is not None:
        init = np.asarray(init, np.float32)
        try:
            return jnp.asarray(np.broadcast_to(init, shape))
        except ValueError:
            raise ValueError(f'init has shape {init.shape}; expected w+ {shape} (or a shape that broadcasts to '
                             f'it, e.g. [{shape[2]}] for one w)') from None
    if enc_w is not None:
        return enc_w
    return jnp.broadcast_to(_mean_w(gen, variables), shape)


# --------------------------------------------------------------------------- the public entry point


def project(gen: Generator, variables: Mapping[str, Any], targets, *, steps: int = 100, optimizer: str = 'lbfgs',
            lr: Optional[float] = None, mse_weight: float = 1., lpips_weight: float = 1., lpips_res: int = 256,
            init=None,
            encoder: Optional[tuple] = None, encoder_reg_weight: float = 0., random_subgenerators: bool = False,
            subgenerator_mode: str = 'uniform', seed: int = 0, progress: bool = True,
            callback: Optional[Callable[[int, jax.Array, dict], Any]] = None) -> ProjectionResult:
    """Optimises w+ so that ``gen`` (with its constant noise) reconstructs ``targets``.

    Args:
      targets: NHWC float images in [-1, 1] at the generator's resolution (see :func:`load_image`).
      steps: optimiser steps (the original's ``n_iter``, 100).
      optimizer: 'lbfgs' (the original's default) or 'adam'.
      lr: Adam's learning rate (default 0.001), or L-BFGS's step scale (default 1).
      mse_weight, encoder_reg_weight: loss weights (the original's defaults 1 and 0).
      lpips_weight: LPIPS's weight (1 in the original, which has no such option); 0 leaves VGG
        out of the compiled program, a pixel-only projection that compiles and runs much faster.
      lpips_res: LPIPS-VGG compares images resized to ``min(lpips_res, resolution)`` (>= 16).
      init: a w+ array (anything broadcasting to [N, n_style, style_dim]) to start from; default the
        encoder's prediction if ``encoder`` is given, else the mean w.
      encoder: ``(module, variables)``; ``module.apply(variables, images)`` maps [N, 256, 256, 3]
        images in [-1, 1] to w+. Used for the initialisation and the regulariser.
      random_subgenerators: render a random sub-generator each step (widths drawn by
        ``subgenerator_mode``: 'uniform', 'flexible' or 'sandwich'; one of the three highest
        resolutions), so the latent is good for every width and resolution.
      seed: the random sub-generator draws.
      callback: ``callback(step, w_plus, terms)`` after every step (``w_plus`` a NumPy copy of the
        latent after that step, ``terms`` the losses measured during it); returning True stops early.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f'optimizer={optimizer!r} is not supported; expected one of {OPTIMIZERS}')
    if subgenerator_mode not in SUBGENERATOR_MODES:
        raise ValueError(f'subgenerator_mode={subgenerator_mode!r}; expected one of {SUBGENERATOR_MODES}')
    if steps < 0:
        raise ValueError(f'steps must be >= 0, got {steps}')
    if encoder_reg_weight > 0 and encoder is None:
        raise ValueError('encoder_reg_weight > 0 keeps w+ close to the encoder\'s prediction: pass encoder=(module, '
                         'variables)')
    if 'noise' not in variables:
        raise ValueError("variables lack the 'noise' collection: projection renders with the stored constant noise; "
                         "pass the full variables from convert.load_generator / gen.init_variables")
    lpips_res = min(int(lpips_res), gen.top_res)
    if lpips_weight != 0:
        lpips_lib.check_resolution(lpips_res, 'lpips_res')
    targets = check_targets(targets, gen.top_res)
    shape = (targets.shape[0], gen.n_style, gen.style_dim)

    enc_w = _encoder_w(encoder, targets, shape) if encoder is not None else None
    w = _initial_w(gen, variables, init, enc_w, shape)
    setup = _Setup(gen=gen, optimizer=optimizer, lr=float(DEFAULT_LR[optimizer] if lr is None else lr),
                   lpips_res=lpips_res, use_lpips=lpips_weight != 0,
                   subgen_mode=subgenerator_mode if random_subgenerators else None,
                   subgen_res=tuple(gen.trained_output_resolutions[-N_SUBGENERATOR_RES:]))
    init_fn, step_fn, eval_fn = _programs(setup)
    data = (jnp.asarray(targets), jnp.zeros(shape, jnp.float32) if enc_w is None else enc_w,
            jax.tree.map(jnp.asarray, dict(variables)), lpips_lib.vgg()[1] if lpips_weight != 0 else None,
            jnp.asarray([lpips_weight, mse_weight, encoder_reg_weight], jnp.float32))

    w = jnp.asarray(w, jnp.float32)
    opt_state = init_fn(w)
    history = []
    seed_key = jax.random.key(seed)
    from tqdm.auto import tqdm
    bar = tqdm(range(steps), desc=f'project ({optimizer})', disable=not progress, leave=False)
    for i in bar:
        w, opt_state, terms = step_fn(w, opt_state, seed_key, np.int32(i), data)
        history.append({k: float(v) for k, v in terms.items()})
        bar.set_postfix({k: f'{v:.4f}' for k, v in history[-1].items()})
        if callback is not None and callback(i, np.asarray(w), history[-1]):
            break
    bar.close()
    terms, images = eval_fn(w, data)
    history.append({k: float(v) for k, v in terms.items()})
    return ProjectionResult(w_plus=np.asarray(w), images=np.asarray(images), losses=history)
