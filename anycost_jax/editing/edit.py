"""Edits one latent along attribute directions and previews it on a cheap sub-generator (launch/edit.py).

:func:`edit_latent` adds ``strength`` times each unit direction to the first layers of a w+,
renders before and after with the full generator and the chosen sub-generator, and reports both
renders' latency.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping, Optional

import jax.numpy as jnp
import numpy as np

from anycost_jax import convert, elastic, render
from anycost_jax.editing import directions as dirs
from anycost_jax.editing.editor import style_renderer
from anycost_jax.models.generator import Generator

__all__ = ['CLASSIFIERS', 'EditError', 'parse_edits', 'initial_latent', 'get_directions', 'edit_latent', 'edit']

# --classifier: how its directions are computed (the colors ones conditioned on the background's brightness).
CLASSIFIERS = {'colors': dirs.compute_color_directions}


class EditError(ValueError):
    """The arguments do not describe an edit (a usage error)."""


def parse_edits(items: Iterable[str]) -> dict[str, float]:
    """``{name: strength}`` from ``name=strength`` items (each may hold several, comma separated).

    Raises:
      EditError: an item is not ``name=strength``.
    """
    edits = {}
    for item in (part for entry in items for part in entry.split(',') if part.strip()):
        name, sep, value = item.rpartition('=')
        try:
            edits[name.strip()] = float(value)
        except ValueError:
            raise EditError(f'--edit={item!r}: expected name=strength, e.g. smiling=0.5') from None
        if not sep or not name.strip():
            raise EditError(f'--edit={item!r}: expected name=strength, e.g. smiling=0.5')
    return edits


def initial_latent(gen: Generator, variables: dict, latent: Optional[str] = None, seed: Optional[int] = None,
                   truncation: float = 1.) -> np.ndarray:
    """The w+ ``[1, n_style, style_dim]`` to edit: a ``.npy`` file, or the w of ``seed``'s z (exactly one)."""
    if (latent is None) == (seed is None):
        raise EditError('pass exactly one of --latent=FILE.npy and --seed=N')
    if latent:
        try:
            w = np.load(latent).astype(np.float32)
        except (OSError, ValueError) as e:
            raise EditError(f'--latent={latent!r} is not a .npy latent numpy can read ({e})') from None
        if w.shape[-2:] != (gen.n_style, gen.style_dim) or w.ndim not in (2, 3):
            raise EditError(f'{latent} has shape {w.shape}; this generator needs w+ [{gen.n_style}, {gen.style_dim}]')
        return w.reshape(1, gen.n_style, gen.style_dim)
    z = render.z_from_seeds([seed], gen.style_dim)
    _, w = gen.apply(variables, z, truncation=truncation, return_styles=True)
    return np.asarray(w)


def get_directions(gen: Generator, variables: dict, boundaries: Optional[str] = None,
                   classifier: Optional[str] = None, *, n_samples: int = 20000, batch_size: int = 64,
                   top_fraction: float = dirs.TOP_FRACTION, save: Optional[str] = None,
                   log: Callable[[str], Any] = print) -> dict[str, np.ndarray]:
    """Directions from a ``boundaries`` file or URL, or computed with a ``classifier`` of :data:`CLASSIFIERS`.

    With a classifier each direction's held-out SVM accuracy is logged and ``save`` (an .npz) gets them.
    """
    if (classifier is None) == (boundaries is None):
        raise EditError('pass exactly one of --boundaries=FILE_OR_URL and --compute_directions')
    if boundaries:
        return dirs.load_boundaries(boundaries)
    found, accuracy = CLASSIFIERS[classifier](gen, variables, n_samples=n_samples, batch_size=batch_size,
                                              top_fraction=top_fraction, return_accuracy=True)
    for name, acc in accuracy.items():
        log(f'direction {name!r}: held-out SVM accuracy {acc:.3f}')
    if found.conditioned_on:
        log(f'the other directions are conditioned on {found.conditioned_on!r} (its component removed)')
    log(f'slider range: +-{found.max_strength:g} ({dirs.SLIDER_SIGMAS:g} std of the sampled w along the directions)')
    if save:
        dirs.save_directions(save, found)
    return found


def edit_latent(gen: Generator, variables: dict, w: np.ndarray, directions: Mapping[str, np.ndarray],
                edits: Mapping[str, float], output: str, *, slider_units: bool = False,
                n_layers: int = dirs.N_STYLE_TO_CHANGE, channel_ratio: float = 0.5, resolution: Optional[int] = None,
                repeats: int = 5, scale: int = 0, log: Callable[[str], Any] = print) -> np.ndarray:
    """Applies ``edits`` to ``w`` and writes ``before.png``, ``after.png`` and ``edited.npy`` to ``output``.

    Args:
      gen, variables: the generator.
      w: the w+ ``[1, n_style, style_dim]``.
      directions: ``{name: direction}`` (names resolved as :func:`directions.resolve_direction` does).
      edits: ``{name: strength}``; with ``slider_units`` the original demo's slider values (-100..100).
      output: the folder.
      n_layers: edit the first ``n_layers`` layers of w+.
      channel_ratio, resolution: the preview sub-generator (resolution None: the full one).
      repeats: timed renders per latency (the median is logged).
      scale: the PNGs' enlargement (:func:`anycost_jax.render.png_scale`; 0: to at least 128 px).
    Returns:
      The edited w+.

    Each png shows the full generator's render beside the sub-generator's, enlarged.
    """
    res = resolution or gen.top_res
    for name in edits:
        dirs.resolve_direction(directions, name)
    strengths = {k: dirs.slider_strength(v) if slider_units else v for k, v in edits.items()}
    edited = dirs.apply_edits(w, directions, strengths, n_layers=n_layers)

    full, sub = style_renderer(gen, None, None), style_renderer(gen, channel_ratio, res)
    os.makedirs(output, exist_ok=True)
    for tag, latent in (('before', w), ('after', edited)):
        a = render.to_uint8(full(variables, jnp.asarray(latent)))[0]
        b = render.resize(render.to_uint8(sub(variables, jnp.asarray(latent)))[0], gen.top_res)
        render.save_png(os.path.join(output, f'{tag}.png'), np.concatenate([a, b], axis=1), scale)
    latent = jnp.asarray(edited)
    full_ms = render.latency_ms(full, variables, latent, repeats=repeats)
    sub_ms = render.latency_ms(sub, variables, latent, repeats=repeats)
    log(f'full generator ({gen.top_res}px): {full_ms:.2f} ms; {channel_ratio}x@{res}: {sub_ms:.2f} ms')
    np.save(os.path.join(output, 'edited.npy'), np.asarray(edited[0], np.float32))
    log(f'wrote before.png, after.png and edited.npy to {os.path.abspath(output)}')
    return edited


def edit(generator: str, edits: Mapping[str, float], output: str, *, latent: Optional[str] = None,
         seed: Optional[int] = None, truncation: float = 1., boundaries: Optional[str] = None,
         classifier: Optional[str] = None, n_samples: int = 20000, batch_size: int = 64,
         top_fraction: float = dirs.TOP_FRACTION, save_directions: Optional[str] = None,
         channel_ratio: float = 0.5, resolution: Optional[int] = None, log: Callable[[str], Any] = print,
         **kwargs) -> np.ndarray:
    """Loads ``generator`` (as :func:`convert.load_generator`: a workdir too), finds the latent and directions, edits.

    Arguments are those of :func:`initial_latent`, :func:`get_directions` and :func:`edit_latent`
    (``kwargs``: ``slider_units``, ``n_layers``, ``repeats``, ``scale``); everything cheap is checked before
    the generator is loaded or anything compiles.

    Raises:
      EditError: arguments that describe no edit.
    """
    if not edits:
        raise EditError('no --edit given: pass e.g. --edit=smiling=0.5')
    elastic.check_ratio(channel_ratio)
    render.check_truncation(truncation)
    render.png_scale(1, kwargs.get('scale', 0))
    if latent is not None and not os.path.isfile(latent):
        raise EditError(f'--latent={latent!r} does not exist; pass a w+ .npy from launch/project.py or --seed=N')
    gen, variables = convert.load_generator(generator)
    gen.check_target_res(resolution or gen.top_res)
    if resolution:
        elastic.warn_untrained(gen, [resolution], '--resolution')
    w = initial_latent(gen, variables, latent, seed, truncation)
    directions = get_directions(gen, variables, boundaries, classifier, n_samples=n_samples, batch_size=batch_size,
                                top_fraction=top_fraction, save=save_directions, log=log)
    return edit_latent(gen, variables, w, directions, edits, output, channel_ratio=channel_ratio,
                       resolution=resolution, log=log, **kwargs)
