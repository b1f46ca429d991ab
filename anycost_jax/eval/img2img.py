"""FID of an image-to-image generator on a held-out split, as gan-compression's ``evaluate_model``:
the generator's outputs on the split's inputs against the Inception statistics of the split's
real targets (pix2pix: B; GauGAN: the photos; CycleGAN A -> B: the B domain's images, B -> A: A's).

Images go through the evaluation preprocessing of :func:`anycost_jax.train.img2img.make_stream`
(``train=False``: the whole image at the crop size, no flip). The split is read in global batches
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

from anycost_jax.data import img2img_pipeline as pipe
from anycost_jax.eval import fid as fid_lib

log = logging.getLogger(__name__)
DIRECTIONS = ('AtoB', 'BtoA')


class _OneDomain:
    """A single-domain ('image') source read as paired A = B, so a PairedStream walks it in order."""

    def __init__(self, source):
        self.source = source

    @property
    def keys(self):
        return ('A', 'B')

    def __len__(self):
        return len(self.source)

    def get(self, indices, pool=None):
        images = self.source.get(indices, pool)['image']
        return {'A': images, 'B': images}


def _streams(config, split: str, direction: str, batch: int):
    """(stream of generator inputs, key of the input, stream of real targets, key of the target)."""
    from anycost_jax.train import img2img
    source = img2img.source_of(config, split)
    common = dict(process_index=None, process_count=None, prefetch=1)
    if config.method != 'cycle_gan':
        if direction != 'AtoB':
            raise ValueError(f'{config.method} translates one way; direction={direction!r} is for CycleGAN '
                             '(set config.direction to train the other way)')
        stream = img2img.make_stream(config, split, 0, batch, train=False, source=source, **common)
        return stream, None, stream, 'image' if config.method == 'gaugan' else 'B'
    if isinstance(source, pipe.UnpairedSource):
        src, real = (source.a, source.b) if direction == 'AtoB' else (source.b, source.a)
        src, real = _OneDomain(src), _OneDomain(real)
    else:  # procedural recolor's test split: paired A / B
        src = real = source
    def walk(source):  # in order, no unpaired draws
        return pipe.PairedStream(source, global_batch=batch, seed=config.seed, start_step=0,
                                 preprocess=img2img.preprocess_of(config, train=False), name=f'{config.dataset} ({split})',
                                 **common)
    inputs = walk(src)
    targets = inputs if real is src else walk(real)
    key_in, key_real = ('A', 'B') if direction == 'AtoB' or real is not src else ('B', 'A')
    return inputs, key_in, targets, key_real


def _n_batches(stream, batch: int) -> int:
    n = len(stream.source)
    if n < batch:
        raise ValueError(f'the split has {n} examples, fewer than one evaluation batch ({batch}); lower the batch')
    return n // batch


def _features(extractor, images: np.ndarray) -> np.ndarray:
    return extractor(np.clip(images, -1, 1))


def fid(config, gen, variables: dict, extractor, *, split: Optional[str] = None, direction: str = 'AtoB',
        batch_size: int = 8, real: Optional[fid_lib.FIDStats] = None, stats_path: Optional[str] = None) -> float:
    """FID of ``gen`` (with ``variables``; CycleGAN: the generator of ``direction``) on ``split``
    (default ``config.test_split``). ``extractor``: a :class:`anycost_jax.eval.fid.FeatureExtractor`."""
    from anycost_jax.train import img2img
    if direction not in DIRECTIONS:
        raise ValueError(f'direction={direction!r} is not one of {DIRECTIONS}')
    split = split or config.test_split
    batch = batch_size - batch_size % jax.process_count() or jax.process_count()
    inputs, key_in, targets, key_real = _streams(config, split, direction, batch)
    apply = img2img._apply(gen)
    start = time.time()
    try:
        if real is None and stats_path and os.path.isfile(stats_path):
            real = fid_lib.load_stats(stats_path)
        fake, reals = fid_lib._Moments(), None if real is not None else fid_lib._Moments()
        n = _n_batches(inputs, batch)
        for step in range(n):
            b = inputs.batch_at(step)
            x = img2img.generator_input(config, b) if key_in is None else b[key_in]
            fake.add(_features(extractor, np.asarray(apply(variables, x))))
            if reals is not None:
                t = b if targets is inputs else targets.batch_at(step)
                reals.add(_features(extractor, t[key_real]))
        if reals is not None:
            if targets is not inputs:  # the real domain may hold more images than the input one
                for step in range(n, _n_batches(targets, batch)):
                    reals.add(_features(extractor, targets.batch_at(step)[key_real]))
            real = reals.stats(dataset=f'{config.dataset}:{split}:{key_real}')
            if stats_path and jax.process_index() == 0:
                real.save(stats_path)
                log.info('wrote the real statistics of %s to %s', real.dataset, stats_path)
    finally:
        inputs.close()
        if targets is not inputs:
            targets.close()
    value = fake.stats().fid(real)
    log.info('FID %s on %s (%d images): %.3f (%.0f s)', direction, split, n * batch, value, time.time() - start)
    return value
