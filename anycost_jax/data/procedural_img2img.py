"""The embedded image-to-image data: the shapes scenes of :mod:`.procedural` as three tasks.

Every example is a pure function of (seed, index, resolution), drawn here, so the family's
embedded default needs no download and a person (or a test) can judge an output against its
exact ground truth:

* ``labels2image`` (paired; pix2pix on Cityscapes-like data, GauGAN): the input is the scene's
  **label map**: class 0 the background, ``1 + 4 * kind + color`` each shape (13 classes), later
  shapes over earlier ones, a pixel belongs to a shape when its center is inside it. As an
  image (pix2pix) the classes are painted in :data:`LABEL_COLORS`; SPADE takes them one-hot.
  The target is the rendered scene on one fixed background (:data:`PAIRED_BACKGROUND`, dark slate
  to sand, top left to bottom right), so that it is a function of the input: a scene's own random
  gradient could not be told from its label map, and a generator could only learn its mean.
* ``edges2image`` (paired; edges2shoes-like): the input is the label map's boundaries, black
  one-pixel lines on white; the target is the scene on the fixed background with every shape
  painted in its *kind's* color (:data:`KIND_COLORS`: discs red, squares blue, rings yellow).
  An outline says nothing of a shape's own color draw, so with that as the target a generator
  could only learn the palette's mean; its kind it can read from the outline.
* ``recolor`` (unpaired; horse2zebra-like): domain A is the scenes with red and green shapes
  (:data:`DOMAIN_A`), domain B the same kind of scenes with yellow and blue ones. The domains
  must differ in distribution (with the whole palette on both sides, as before, B was A's own
  distribution and the identity a perfect CycleGAN solution). Unpaired data cannot say which
  of the two bijections between {red, green} and {yellow, blue} is meant; the ground truth is
  the one that changes colors least in RGB distance (:data:`RECOLOR`: red -> yellow, green -> blue), which is
  what the identity and cycle losses settle on (a run with the other mapping as the ground truth
  learned this one). ``trainA`` draws even indices and ``trainB`` odd ones, so no pair is ever
  seen; the ground truth of A -> B for scene ``i`` is scene ``i`` repainted, which
  :func:`recolor_target` draws.
"""
from __future__ import annotations

import numpy as np

from anycost_jax.data.procedural import COLORS, KINDS, pixel_grid, render_example, scene, shape_distance

TASKS = ('labels2image', 'edges2image', 'recolor')
N_CLASSES = 1 + len(KINDS) * len(COLORS)
# class -> RGB of the painted label map: gray background, then per kind a distinct hue per color
LABEL_COLORS = np.array([(128, 128, 128)] + [
    tuple(int(v) for v in (255 * np.array(h)).round())
    for h in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0),        # discs
              (1, .5, .5), (.5, 1, .5), (.5, .5, 1), (1, 1, .6),  # squares
              (.5, 0, 0), (0, .5, 0), (0, 0, .5), (.5, .5, 0)]],  # rings
    np.uint8)
RECOLOR = np.array([3, 2, 1, 0])  # color index -> its nearest partner: red <-> yellow, green <-> blue
DOMAIN_A = np.array([0, 1, 0, 1])  # a scene's color draw (0..3) -> its color in domain A: red or green
DOMAIN_B = RECOLOR[DOMAIN_A]       # ... in domain B: yellow or blue
KIND_COLORS = COLORS[[0, 2, 3]]   # edges2image targets: disc red, square blue, ring yellow
PAIRED_BACKGROUND = (0, 3, np.pi / 4)  # tones (dark slate, sand) and gradient angle of the paired targets
SPLITS = ('train', 'test')
_TEST_OFFSET = 1 << 30  # test scenes: indices that training never draws


def label_map(index: int, resolution: int, seed: int = 0) -> np.ndarray:
    """uint8 [H, W] class indices of scene ``index`` (0 background, ``1 + 4 * kind + color``)."""
    s = scene(index, seed)
    x, y = pixel_grid(resolution)
    out = np.zeros((resolution, resolution), np.uint8)
    for sh in s['shapes']:
        out[shape_distance(sh, x, y) <= 0] = 1 + 4 * KINDS.index(sh['kind']) + sh['color']
    return out


def paint_labels(labels: np.ndarray) -> np.ndarray:
    """A label map as an RGB image (:data:`LABEL_COLORS`)."""
    return LABEL_COLORS[labels]


def edges(labels: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3]: white, black on every pixel whose right or lower neighbour has another class."""
    e = np.zeros(labels.shape, bool)
    e[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    e[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return np.repeat(np.where(e, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def recolor_source(index: int, resolution: int, seed: int = 0) -> np.ndarray:
    """Scene ``index`` in domain A (red and green shapes)."""
    return render_example(index, resolution, seed, colors=COLORS[DOMAIN_A])


def recolor_target(index: int, resolution: int, seed: int = 0) -> np.ndarray:
    """Scene ``index`` in domain B (yellow and blue): the ground truth of translating its domain-A image."""
    return render_example(index, resolution, seed, colors=COLORS[DOMAIN_B])


def scene_index(split: str, i: int) -> int:
    if split not in SPLITS:
        raise ValueError(f'split={split!r}; expected one of {SPLITS}')
    return i if split == 'train' else _TEST_OFFSET + i


def example(task: str, i: int, resolution: int, seed: int = 0, split: str = 'train') -> dict:
    """Example ``i`` of ``task``'s ``split`` as uint8 arrays.

    Paired tasks: ``{'input': [H, W, 3], 'target': [H, W, 3], 'labels': [H, W]}`` (``labels`` the
    class map, for SPADE). ``recolor``: ``{'A': ..., 'B': ...}``, unpaired in training (A from
    scene ``2i``, B from scene ``2i + 1``); at test, ``A`` and its ground truth ``B`` of one scene.
    """
    if task not in TASKS:
        raise ValueError(f'task={task!r} is not one of {TASKS}')
    if task == 'recolor':
        if split == 'test':
            k = scene_index(split, i)
            return {'A': recolor_source(k, resolution, seed), 'B': recolor_target(k, resolution, seed)}
        return {'A': recolor_source(2 * i, resolution, seed), 'B': recolor_target(2 * i + 1, resolution, seed)}
    k = scene_index(split, i)
    labels = label_map(k, resolution, seed)
    source = paint_labels(labels) if task == 'labels2image' else edges(labels)
    if task == 'labels2image':
        target = render_example(k, resolution, seed, background=PAIRED_BACKGROUND)
    else:
        target = render_example(k, resolution, seed, colors=KIND_COLORS, background=PAIRED_BACKGROUND, by_kind=True)
    return {'input': source, 'target': target, 'labels': labels}
