"""FID of an image-to-image generator on a held-out split, as gan-compression's ``evaluate_model``:
the generator's outputs on the split's inputs against the Inception statistics of the split's
real targets (pix2pix: B; GauGAN: the photos; CycleGAN A -> B: the B domain's images, B -> A: A's;
CycleGAN's real statistics also take the training images of that domain: ``extra_reals``).

The upstream's protocol (``metric.get_fid`` / ``get_real_stat.py``), which :func:`protocol_images`
reproduces for fakes and reals alike: images in [-1, 1] go to uint8 *by truncation*
(``util.tensor2im``: ``uint8(clip((x + 1) / 2 * 255, 0, 255))``), then pytorch-fid's Inception takes
``uint8 / 255``, resized bilinearly to 299 (``F.interpolate``, no antialias) and mapped to [-1, 1].
We map back to [-1, 1] before the resize (the resize is affine-equivariant: equal to float rounding)
and feed :class:`anycost_jax.eval.fid.FeatureExtractor`. The truncation matters: it darkens every
fake by half a level on average, and real pixels 1..63 come back one level lower (their float
``(u / 255 - 0.5) / 0.5`` maps back just under ``u``), in the upstream's released statistics too.

The streams come from :func:`anycost_jax.train.img2img.fid_streams` (the evaluation
preprocessing: the whole image at the crop size, no flip). The split is read in global batches
of ``batch_size``; ``floor(n / batch_size)`` batches cover that many distinct examples (the stream's
first epoch), so choose ``batch_size`` dividing the split for every example to count. Every host
generates its share and the features of all hosts are gathered (the FeatureExtractor's contract).
Real statistics: given, read from ``stats_path`` (ours or the original's ``real_stat/*.npz``: keys mu
and sigma), or computed from the split and written there.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable, Optional, Sequence

import jax
import numpy as np

from anycost_jax.eval import fid as fid_lib

log = logging.getLogger(__name__)


def _n_batches(stream, batch: int) -> int:
    n = len(stream.source)
    if n < batch:
        raise ValueError(f'the split has {n} examples, fewer than one evaluation batch ({batch}); lower the batch')
    return n // batch


def to_uint8(images):
    """``util.tensor2im`` of images in [-1, 1]: ``(x + 1) / 2 * 255`` in float32, clipped, truncated to uint8."""
    import jax.numpy as jnp
    x = jnp.asarray(images, jnp.float32)
    return jnp.clip((x + 1) / 2 * 255, 0, 255).astype(jnp.uint8)


def protocol_images(images) -> np.ndarray:
    """Images in [-1, 1] as the upstream's FID sees them: truncated to uint8, back in [-1, 1] (float32)."""
    return np.asarray(to_uint8(images), np.float32) / np.float32(255) * np.float32(2) - np.float32(1)


def _features(extractor, images: np.ndarray) -> np.ndarray:
    return extractor(protocol_images(images))


def fid(apply, inputs, input_of, targets, key_real: str, extractor, *, batch: int,
        real: Optional[fid_lib.FIDStats] = None, stats_path: Optional[str] = None, label: str = '',
        extra_reals: Sequence[tuple] = ()) -> float:
    """FID of ``apply(x)`` over the stream ``inputs`` (``input_of(batch) -> x``) against the images
    ``key_real`` of the stream ``targets`` (which may be ``inputs`` itself), both walked from batch 0 in
    global batches of ``batch``; ``real``: the real statistics, else read from / written to ``stats_path``;
    ``extra_reals``: more ``(stream, key)`` whose every batch joins the real statistics when they are made
    (CycleGAN: the target domain's training images)."""
    start = time.time()
    if real is None and stats_path and os.path.isfile(stats_path):
        real = fid_lib.load_stats(stats_path)
    fake, reals = fid_lib._Moments(), None if real is not None else fid_lib._Moments()
    n = _n_batches(inputs, batch)
    for step in range(n):
        b = inputs.batch_at(step)
        fake.add(_features(extractor, np.asarray(apply(input_of(b)))))
        if reals is not None:
            t = b if targets is inputs else targets.batch_at(step)
            reals.add(_features(extractor, t[key_real]))
    if reals is not None:
        if targets is not inputs:  # the real domain may hold more images than the input one
            for step in range(n, _n_batches(targets, batch)):
                reals.add(_features(extractor, targets.batch_at(step)[key_real]))
        for stream, key in extra_reals:
            for step in range(_n_batches(stream, batch)):
                reals.add(_features(extractor, stream.batch_at(step)[key]))
        real = reals.stats(dataset=label)
        if stats_path and jax.process_index() == 0:
            real.save(stats_path)
            log.info('wrote the real statistics of %s to %s', label, stats_path)
    value = fake.stats().fid(real)
    log.info('FID %s (%d images): %.3f (%.0f s)', label, n * batch, value, time.time() - start)
    return value


def fid_fitness(generate_for: Callable, inputs: Sequence, real: fid_lib.FIDStats, extractor) -> Callable:
    """A search fitness: ``fitness(candidates) -> [FID]`` (lower is better) of ``generate_for(candidate)``
    (``x -> images``) over the held batches ``inputs`` (every candidate sees the same ones) against the
    real statistics ``real``, with the upstream's protocol (:func:`protocol_images`)."""
    inputs = list(inputs)
    if not inputs:
        raise ValueError('FID fitness: no held-out input batches')

    def fitness(candidates) -> list[float]:
        out = []
        for c in candidates:
            generate, fake = generate_for(c), fid_lib._Moments()
            for x in inputs:
                fake.add(_features(extractor, np.asarray(generate(x))))
            out.append(fake.stats().fid(real))
        return out
    return fitness
