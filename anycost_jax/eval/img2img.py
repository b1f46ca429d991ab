"""FID of an image-to-image generator on a held-out split, as gan-compression's ``evaluate_model``:
the generator's outputs on the split's inputs against the Inception statistics of the split's
real targets (pix2pix: B; GauGAN: the photos; CycleGAN A -> B: the B domain's images, B -> A: A's).

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
from typing import Optional

import jax
import numpy as np

from anycost_jax.eval import fid as fid_lib

log = logging.getLogger(__name__)


def _n_batches(stream, batch: int) -> int:
    n = len(stream.source)
    if n < batch:
        raise ValueError(f'the split has {n} examples, fewer than one evaluation batch ({batch}); lower the batch')
    return n // batch


def _features(extractor, images: np.ndarray) -> np.ndarray:
    return extractor(np.clip(images, -1, 1))


def fid(apply, inputs, input_of, targets, key_real: str, extractor, *, batch: int,
        real: Optional[fid_lib.FIDStats] = None, stats_path: Optional[str] = None, label: str = '') -> float:
    """FID of ``apply(x)`` over the stream ``inputs`` (``input_of(batch) -> x``) against the images
    ``key_real`` of the stream ``targets`` (which may be ``inputs`` itself), both walked from batch 0 in
    global batches of ``batch``; ``real``: the real statistics, else read from / written to ``stats_path``."""
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
        real = reals.stats(dataset=label)
        if stats_path and jax.process_index() == 0:
            real.save(stats_path)
            log.info('wrote the real statistics of %s to %s', label, stats_path)
    value = fake.stats().fid(real)
    log.info('FID %s (%d images): %.3f (%.0f s)', label, n * batch, value, time.time() - start)
    return value
