"""Attribute directions in W: loading, applying, and computing them.

* :func:`load_boundaries` reads the original's boundary file (a ``torch.save``'d dict of
  ``'{index:02d}_{CelebA attribute}'`` -> unit vector [1, 512], read without torch) or our
  ``.npz`` (:func:`save_directions`), from a path or a URL (downloaded once into the cache).
* A set of directions carries its slider range (:class:`Directions`, ``max_strength``): the
  original's boundary file has none (its demo's 0.6 applies); computed directions get
  :data:`SLIDER_SIGMAS` standard deviations of the sampled w along them, saved in the ``.npz``
  with them, so computed and reloaded directions give the same sliders.
* :func:`apply_edits` is the original demo's edit: ``w+[:, :12] += value / 100 * 0.6 * direction``
  for each slider ``value`` in [-100, 100]; here ``strength`` is the already-scaled amount
  (:func:`slider_strength` converts a slider value), so any direction can be used at any scale.
* :func:`compute_directions` is the original's ``tools/extract_edit_directions.py`` (after
  InterFaceGAN): sample z, map to w with truncation 0.7, render with the constant noise, score
  the images with a classifier, take the top and bottom 2% per attribute, fit a linear SVM on
  w (70% of them; the other 30% report a validation accuracy), and keep the SVM's unit normal.
  scikit-learn's ``SVC(kernel='linear', C=1)`` is replaced by our primal linear SVM
  (:func:`linear_svm`: squared hinge loss, L2 penalty, unpenalised bias, solved by L-BFGS in JAX).
* :func:`color_attributes` scores images of the procedural demo dataset (how much red, green,
  blue, yellow in the shapes, and how bright the background, measured apart), so the demo
  generator gets directions with no classifier download.
"""
from __future__ import annotations

import functools
import math
import os
from typing import Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from anycost_jax.data import procedural
from anycost_jax.models.encoder import CELEBA_ATTRIBUTES  # noqa: F401  (boundary keys are f'{index:02d}_{name}')
from anycost_jax.models import generator as generator_lib
from anycost_jax.models.generator import Generator

# The original demo (demo.py): slider name -> boundary key, the layers it edits, its scale.
DEMO_DIRECTIONS = {
    'smiling': '31_Smiling',
    'young': '39_Young',
    'wavy hair': '33_Wavy_Hair',
    'gray hair': '17_Gray_Hair',
    'blonde hair': '09_Blond_Hair',
    'eyeglass': '15_Eyeglasses',
    'mustache': '22_Mustache',
}
N_STYLE_TO_CHANGE = 12
SLIDER_MAX_VALUE = 0.6      # a slider at +-100 moves w by +-0.6 along the unit direction
SLIDER_RANGE = 100
SLIDER_SIGMAS = 3.          # computed directions: a slider's end is 3 std of the sampled w along the direction
RANGE_KEY = '__max_strength__'  # where an .npz keeps its directions' slider range
BOUNDARY_URL = 'https://hanlab18.mit.edu/projects/anycost-gan/files/boundary_{config}.pt'

# compute_directions defaults: the original's (InterFaceGAN's) settings.
TRUNCATION = 0.7
TOP_FRACTION = 0.02
SPLIT_RATIO = 0.7
MEAN_STYLE_SAMPLES = 100000  # the extraction script's truncation centre


# --------------------------------------------------------------------------- files


class Directions(dict):
    """``{name: unit direction}`` with the distance a slider at its end moves w along each one
    (``max_strength``; None: not known, e.g. the original's boundary file) and the direction the
    others were :func:`conditioned` on (``conditioned_on``; None: none, or not known)."""

    def __init__(self, directions=(), max_strength: Optional[float] = None, conditioned_on: Optional[str] = None):
        super().__init__(directions)
        self.max_strength = max_strength
        self.conditioned_on = conditioned_on


def spread_range(latents, directions: Mapping[str, np.ndarray], sigmas: float = SLIDER_SIGMAS) -> float:
    """``sigmas`` x the mean (over the directions) standard deviation of ``latents`` [n, d] along
    each direction: a slider range in which every direction moves w as far as the samples spread."""
    latents = np.asarray(latents, np.float64)
    stds = [np.std(latents @ np.asarray(d, np.float64).reshape(-1)) for d in directions.values()]
    return round(float(sigmas * np.mean(stds)), 4)


def boundary_url(config: str = 'anycost-ffhq-config-f') -> str:
    """The original's hosted boundary file for a generator config."""
    return BOUNDARY_URL.format(config=config)


def load_boundaries(path_or_url: str) -> Directions:
    """Directions by name, each float32 [style_dim] (the original stores [1, style_dim]).

    Reads the original's torch-saved dict (``.pt``) or our ``.npz``; URLs are downloaded once into
    the cache (``$ANYCOST_CACHE``). ``max_strength`` is the ``.npz``'s stored range, else None.
    """
    path = os.fspath(path_or_url)
    if path.startswith(('http://', 'https://')):
        from anycost_jax import convert
        path = convert.resolve_path(path)
    elif not os.path.exists(path):
        raise FileNotFoundError(f'boundary file {path!r} does not exist; expected the original\'s boundary .pt '
                                f'(e.g. {boundary_url()}), an .npz from save_directions, or a URL')
    max_strength = None
    if path.endswith('.npz'):
        with np.load(path) as f:
            raw = {k: f[k] for k in f.files}
        if RANGE_KEY in raw:
            max_strength = float(raw.pop(RANGE_KEY))
    else:
        from anycost_jax.convert.torch_io import load_torch_file
        raw = load_torch_file(path)
        if not isinstance(raw, Mapping):
            raise ValueError(f'{path}: expected a dict of name -> direction tensor, found {type(raw).__name__}')
    out = Directions(max_strength=max_strength)
    for k, v in raw.items():
        v = np.asarray(v, np.float32)
        if v.size == 0 or v.size != v.shape[-1] or not np.isfinite(v).all():
            raise ValueError(f'{path}: direction {k!r} has shape {v.shape}; expected one finite vector '
                             f'([style_dim] or [1, style_dim])')
        out[str(k)] = v.reshape(-1)
    if not out:
        raise ValueError(f'{path} holds no directions')
    return out


def save_directions(path: str, directions: Mapping[str, np.ndarray]) -> None:
    """Writes directions as ``.npz`` (name -> float32 [style_dim]), readable by :func:`load_boundaries`,
    with their slider range (``directions.max_strength``) when they have one."""
    if not str(path).endswith('.npz'):
        raise ValueError(f'save_directions writes .npz files; got {path!r}')
    arrays = {k: np.asarray(v, np.float32).reshape(-1) for k, v in directions.items()}
    if getattr(directions, 'max_strength', None) is not None:
        arrays[RANGE_KEY] = np.float64(directions.max_strength)  # float64: the loaded range is the same float
    np.savez(path, **arrays)


def conditioned(directions: Mapping[str, np.ndarray], on: str) -> Directions:
    """InterFaceGAN's conditional manipulation: every direction but ``on`` with its component along
    ``on`` removed (renormalized), so moving along it leaves the ``on`` attribute's score unchanged
    to first order; ``on`` and the slider range are kept."""
    base = np.asarray(resolve_direction(directions, on), np.float32).reshape(-1)
    base = base / np.linalg.norm(base)
    out = Directions(max_strength=getattr(directions, 'max_strength', None), conditioned_on=on)
    for name, d in directions.items():
        d = np.asarray(d, np.float32).reshape(-1)
        if name != on:
            d = d - (d @ base) * base
            norm = np.linalg.norm(d)
            if not norm > 1e-6:
                raise ValueError(f'direction {name!r} is parallel to {on!r}: nothing is left to condition')
            d = d / norm
        out[name] = d.astype(np.float32)
    return out


def select(directions: Mapping[str, np.ndarray], names: Sequence[str]) -> Directions:
    """Only ``names`` (as :func:`resolve_direction` finds them), in that order, keeping the range."""
    return Directions({n: resolve_direction(directions, n) for n in names}, getattr(directions, 'max_strength', None))


def resolve_direction(directions: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """``directions[name]``, also accepting the demo's slider names ('smiling' -> '31_Smiling')."""
    if name in directions:
        return np.asarray(directions[name])
    if DEMO_DIRECTIONS.get(name) in directions:
        return np.asarray(directions[DEMO_DIRECTIONS[name]])
    demo = sorted(k for k, v in DEMO_DIRECTIONS.items() if v in directions)
    raise KeyError(f'no direction {name!r}; available: {sorted(directions)}' + (f' (and demo names {demo})'
                                                                                 if demo else ''))


# --------------------------------------------------------------------------- editing


def slider_strength(value: float, max_value: float = SLIDER_MAX_VALUE) -> float:
    """The original demo's slider value (-100..100) as a distance along a unit direction."""
    return value / SLIDER_RANGE * max_value


def apply_edits(w_plus, directions: Mapping[str, np.ndarray], strengths: Mapping[str, float],
                n_layers: int = N_STYLE_TO_CHANGE):
    """``w_plus`` ([N, n_style, dim] or [n_style, dim]) with ``strength * direction`` added to its
    first ``n_layers`` layers (all of them if fewer) for every named direction; the coarse and
    middle layers carry attributes, the fine ones colour details. Returns the same array type
    (NumPy or JAX); names may be the demo's slider names."""
    xp = jnp if isinstance(w_plus, jax.Array) else np
    w = xp.asarray(w_plus)
    if w.ndim not in (2, 3):
        raise ValueError(f'w_plus has shape {w.shape}; expected [N, n_style, style_dim] or [n_style, style_dim]')
    delta = xp.zeros(w.shape[-1], w.dtype)
    for name, s in strengths.items():
        d = resolve_direction(directions, name).reshape(-1)
        if d.shape[0] != w.shape[-1]:
            raise ValueError(f'direction {name!r} has {d.shape[0]} entries; w_plus has style_dim {w.shape[-1]}')
        delta = delta + xp.asarray(d, w.dtype) * s
    layer = (xp.arange(w.shape[-2]) < n_layers)[:, None]
    return w + xp.where(layer, delta, 0).astype(w.dtype)


# --------------------------------------------------------------------------- the linear SVM


@functools.partial(jax.jit, static_argnames=('max_iter',))
def _svm_solve(x, y, c, max_iter):
    d = x.shape[1]

    def loss(p):
        margin = y * (x @ p[:d] + p[d])
        return 0.5 * jnp.sum(p[:d] ** 2) + c * jnp.sum(jnp.square(jnp.maximum(0., 1. - margin)))

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def body(carry):
        p, state = carry
        value, grad = value_and_grad(p, state=state)
        updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(p, updates), state

    def cond(carry):
        _, state = carry
        count = optax.tree.get(state, 'count')
        grad = optax.tree.get(state, 'grad')
        return (count == 0) | ((count < max_iter) & (optax.tree.norm(grad) > 1e-6))

    p0 = jnp.zeros(d + 1, x.dtype)
    p, _ = jax.lax.while_loop(cond, body, (p0, opt.init(p0)))
    return p[:d], p[d]


def linear_svm(x, labels, c: float = 1.0, max_iter: int = 500) -> tuple[np.ndarray, float]:
    """A soft-margin linear SVM: ``(normal [d], bias)`` minimising
    ``0.5 |w|^2 + c * sum(max(0, 1 - y (w.x + b))^2)`` with labels in {0, 1} (or booleans)."""
    x = np.asarray(x, np.float32)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise ValueError(f'linear_svm: x must be [n, d] and labels [n], got {x.shape} and {labels.shape}')
    if len(np.unique(labels)) != 2:
        raise ValueError('linear_svm needs samples of both classes')
    y = np.where(labels.astype(bool), 1., -1.).astype(np.float32)
    normal, bias = _svm_solve(jnp.asarray(x), jnp.asarray(y), jnp.float32(c), max_iter)
    return np.asarray(normal), float(bias)


def train_boundary(latents, scores, top_fraction: float = TOP_FRACTION, split_ratio: float = SPLIT_RATIO,
                   seed: int = 0) -> tuple[np.ndarray, float]:
    """InterFaceGAN's ``train_boundary``: the unit normal of an SVM separating the latents with the
    highest ``top_fraction`` of scores from the lowest, and its accuracy on held-out samples
    (``1 - split_ratio`` of them; NaN when none are held out)."""
    latents = np.asarray(latents, np.float32)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if latents.ndim != 2 or scores.shape[0] != latents.shape[0]:
        raise ValueError(f'latents must be [n, d] with one score each, got {latents.shape} and {scores.shape}')
    if not 0 < top_fraction <= 0.5:
        raise ValueError(f'top_fraction must be in (0, 0.5], got {top_fraction}')
    n = latents.shape[0]
    chosen = min(int(n * top_fraction), n // 2)
    n_train = int(chosen * split_ratio)
    if n_train < 1:
        raise ValueError(f'{n} samples x top_fraction {top_fraction} x split_ratio {split_ratio} leaves no training '
                         f'sample per class; draw more samples')
    order = np.argsort(-scores, kind='stable')
    rng = np.random.default_rng(seed)
    pos = latents[order[:chosen]][rng.permutation(chosen)]
    neg = latents[order[n - chosen:]][rng.permutation(chosen)]
    x = np.concatenate([pos[:n_train], neg[:n_train]])
    labels = np.concatenate([np.ones(n_train, bool), np.zeros(n_train, bool)])
    normal, bias = linear_svm(x, labels)
    norm = np.linalg.norm(normal)
    if not norm > 0:
        raise ValueError('the SVM found no direction (the two groups of latents are identical?)')
    accuracy = float('nan')
    if chosen > n_train:
        val = np.concatenate([pos[n_train:], neg[n_train:]])
        truth = np.concatenate([np.ones(chosen - n_train, bool), np.zeros(chosen - n_train, bool)])
        accuracy = float(np.mean((val @ normal + bias > 0) == truth))
    return (normal / norm).astype(np.float32), accuracy


# --------------------------------------------------------------------------- directions from a classifier


def attribute_probabilities(outputs) -> np.ndarray:
    """Classifier outputs as scores [N, n_attr]: scores as they are, or logits [N, n_attr, 2]
    (the original attribute predictor's 80 outputs, viewed as [N, 40, 2]) as the softmax
    probability of the positive class, as the original does."""
    out = np.asarray(outputs, np.float32)
    if out.ndim == 3 and out.shape[-1] == 2:
        out = np.asarray(jax.nn.softmax(out, axis=-1)[..., 1])
    if out.ndim != 2:
        raise ValueError(f'the classifier returned shape {out.shape}; expected scores [N, n_attr] or logits '
                         f'[N, n_attr, 2]')
    return out


@functools.lru_cache(maxsize=8)
def _sampler(gen: Generator, truncation: float):
    """A jitted ``(variables, key, batch, w_avg) -> (truncated w, clamped images)``."""
    @functools.partial(jax.jit, static_argnums=(2,))
    def run(variables, key, batch, w_avg):
        z = jax.random.normal(key, (batch, gen.style_dim))
        w = gen.apply(variables, z, method=Generator.style)
        w = w_avg + truncation * (w - w_avg)
        img = gen.apply(variables, w, input_is_style=True, noise_mode='const')
        return w, jnp.clip(img, -1, 1)
    return run


def _mean_w(gen: Generator, variables, seed: int) -> jax.Array:
    return generator_lib.mean_w(gen, variables, MEAN_STYLE_SAMPLES, jax.random.key(seed), use_stored=False)


def compute_directions(gen: Generator, variables, classifier: Callable, *, n_samples: int = 500000,
                       batch_size: int = 16, top_fraction: float = TOP_FRACTION, split_ratio: float = SPLIT_RATIO,
                       seed: int = 0, truncation: float = TRUNCATION, attribute_names: Optional[Sequence[str]] = None,
                       classifier_res: Optional[int] = None, progress: bool = True,
                       return_accuracy: bool = False):
    """Unit attribute directions in W, one per classifier output: ``{name: float32 [style_dim]}``
    (a :class:`Directions`, its ``max_strength`` :func:`spread_range` of the sampled w).

    ``classifier(images)`` takes NHWC images in [-1, 1] (clamped, resized to ``classifier_res``
    with bilinear ``align_corners=True`` if given; the original resizes to 256 for its predictor)
    and returns scores [N, n_attr] or two-class logits [N, n_attr, 2]. Names come from
    ``attribute_names``, else ``classifier.attribute_names``, else ``attr_{i}``. The defaults are
    the original's (500000 samples, truncation 0.7 toward the mean of 100000 w, top/bottom 2%).
    With ``return_accuracy`` also returns ``{name: held-out SVM accuracy}``.
    """
    from tqdm.auto import tqdm
    from anycost_jax.nn.resize import resize_align_corners
    if n_samples < 2 or batch_size < 1:
        raise ValueError(f'need n_samples >= 2 and batch_size >= 1, got {n_samples} and {batch_size}')
    w_avg = _mean_w(gen, variables, seed)
    run = _sampler(gen, float(truncation))
    key = jax.random.key(seed)
    ws, scores = [], []
    n_batches = math.ceil(n_samples / batch_size)
    for i in tqdm(range(n_batches), desc='sampling and classifying', disable=not progress, leave=False):
        w, images = run(variables, jax.random.fold_in(key, i), batch_size, w_avg)
        if classifier_res is not None:
            images = resize_align_corners(images, classifier_res)
        ws.append(np.asarray(w))
        scores.append(attribute_probabilities(classifier(images)))
    ws = np.concatenate(ws)[:n_samples]
    scores = np.concatenate(scores)[:n_samples]
    names = attribute_names or getattr(classifier, 'attribute_names', None) or \
        [f'attr_{i}' for i in range(scores.shape[1])]
    if len(names) != scores.shape[1]:
        raise ValueError(f'{len(names)} attribute names for {scores.shape[1]} classifier outputs')
    directions, accuracy = Directions(), {}
    for i, name in enumerate(tqdm(names, desc='fitting SVMs', disable=not progress, leave=False)):
        directions[name], accuracy[name] = train_boundary(ws, scores[:, i], top_fraction, split_ratio, seed + i)
    directions.max_strength = spread_range(ws, directions)
    return (directions, accuracy) if return_accuracy else directions


# --------------------------------------------------------------------------- the demo's attributes

COLOR_ATTRIBUTES = procedural.COLOR_NAMES + ('background brightness',)
COLOR_SIGMA = 40.  # RGB distance (0..255) at which a pixel counts e^-1/2 as a palette color
BACKGROUND_SIGMA = 30.  # ... as the fitted background; the palette is >= 100 from every background tone
MUTED_SPREAD = 40.  # max - min of a pixel's RGB: <= 40 for the four background tones, >= 116 for the palette
LUMA = (0.299, 0.587, 0.114)


def _plane_fit(rgb, weights):
    """Per image, the weighted least-squares color plane ``c + cx * x + cy * y`` [N, H, W, 3]."""
    n, h, w, _ = rgb.shape
    y, x = jnp.meshgrid(jnp.linspace(-1, 1, h), jnp.linspace(-1, 1, w), indexing='ij')
    basis = jnp.stack([jnp.ones_like(x), x, y], -1).reshape(1, h * w, 3)           # [1, P, 3]
    wb = weights.reshape(n, h * w, 1) * basis                                       # [N, P, 3]
    gram = jnp.einsum('npi,npj->nij', wb, basis) + 1e-3 * jnp.eye(3)
    coef = jnp.linalg.solve(gram, jnp.einsum('npi,npc->nic', wb, rgb.reshape(n, h * w, 3)))  # [N, 3, 3]
    return jnp.einsum('pi,nic->npc', basis[0], coef).reshape(n, h, w, 3)


@jax.jit
def _color_scores(images):
    rgb = (jnp.clip(images, -1, 1) + 1) * 127.5                              # [N, H, W, 3]
    # The background is a linear gradient between two muted tones: a color plane fitted to the
    # muted pixels, then refitted twice to those close to it (robust to blurred shape edges).
    spread = rgb.max(-1) - rgb.min(-1)
    weights = jnp.exp(-0.5 * jnp.square(spread / MUTED_SPREAD))
    for _ in range(3):
        background = _plane_fit(rgb, weights)
        near = jnp.exp(-jnp.sum(jnp.square(rgb - background), -1) / (2 * BACKGROUND_SIGMA ** 2))
        weights = near * jnp.exp(-0.5 * jnp.square(spread / MUTED_SPREAD)) + 1e-4
    shape = 1 - near                                                          # [N, H, W]: not background
    palette = jnp.asarray(procedural.COLORS)                                  # [4, 3]
    d2 = jnp.sum(jnp.square(rgb[..., None, :] - palette), axis=-1)           # [N, H, W, 4]
    member = jnp.exp(-d2 / (2 * COLOR_SIGMA ** 2)) * shape[..., None]
    amount = member.mean(axis=(1, 2))                                         # [N, 4]
    brightness = background.mean(axis=(1, 2)) @ jnp.asarray(LUMA) / 255      # [N]
    return jnp.concatenate([amount, brightness[:, None]], axis=1)


def color_attributes(images) -> np.ndarray:
    """Scores [N, 5] of NHWC images in [-1, 1] for :data:`COLOR_ATTRIBUTES`, shapes and background
    measured apart so that their directions do not drag each other along.

    The background is a color plane (the dataset's linear gradient) fitted to the muted pixels,
    refitted to the pixels close to it. For each saturated color of the dataset (red, green, blue,
    yellow): the fraction of the image near that color (a soft, Gaussian membership, so blurry GAN
    samples score smoothly) among the pixels that are not background. Background brightness: the
    fitted plane's mean luminance (0..1), whatever the shapes on top of it.
    """
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f'color_attributes expects NHWC RGB images, got shape {images.shape}')
    return np.asarray(_color_scores(images))


color_attributes.attribute_names = COLOR_ATTRIBUTES
# The demo generator ties colors to the background's brightness (on the demo model, the raw
# yellow direction brightened backgrounds by +0.14 at the slider's end): the color directions
# are used conditioned on it (:func:`conditioned`; there +0.14 became -0.02).
COLOR_CONDITION = 'background brightness'


def compute_color_directions(gen: Generator, variables, **kwargs):
    """The procedural demo model's directions: :func:`compute_directions` with
    :func:`color_attributes` (``kwargs`` are its own, ``return_accuracy`` included), the colors
    then :func:`conditioned` on :data:`COLOR_CONDITION`."""
    out = compute_directions(gen, variables, color_attributes, **kwargs)
    if kwargs.get('return_accuracy'):
        return conditioned(out[0], COLOR_CONDITION), out[1]
    return conditioned(out, COLOR_CONDITION)
