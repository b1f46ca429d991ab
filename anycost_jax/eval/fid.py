"""Frechet Inception Distance of Anycost sub-generators, sharded over every device.

As the original (``metrics/fid.py``, ``tools/calc_inception.py``): pytorch-fid's FID Inception
(:mod:`anycost_jax.models.inception`) embeds images in [-1, 1] -- fakes clamped to [-1, 1] first,
no truncation by default, random noise per image (the original's ``randomize_noise=True``) --
resized bilinearly to 299 px; FID compares the mean and covariance of the 2048-d features.

    real = real_stats('ffhq', resolution=256, n_images=50000)      # once per dataset and resolution
    real.save('ffhq256.npz')
    fids = fid_for_configs(gen, variables, [SubConfig(1.0), SubConfig(0.5), SubConfig(1.0, target_res=128)],
                           real={256: 'ffhq256.npz', 128: 'ffhq128.npz'}, n_images=50000)
    # {'1.0x@256': ..., '0.5x@256': ..., '1.0x@128': ...}

Sharding: every program is ``jax.jit(jax.shard_map(...))`` over a 1-D mesh named ``data`` of all
devices of all processes. Each process feeds its own slice of every global batch; features come
back to every process (``process_allgather``), so each process ends with the same statistics.
Batches are padded to a multiple of the device count and the padding is dropped.

Fakes: latent ``i`` (and its noise) is drawn from ``fold_in(key(seed), i)``, so sample ``i`` is
the same image whatever the batch size or device count, and every sub-generator config is
evaluated on the same latents in one pass over them. Each config is its own compiled program
with statically sliced widths (really cheaper, as in deployment) that ends with the clamp and
the resize to 299 px; the Inception trunk is one more program shared by every config.

Statistics accumulate in float64 on the host (sums of features and of their outer products,
shifted by the first batch's mean), so no feature matrix is kept.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import tempfile
import warnings
from typing import Any, Mapping, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from scipy import linalg

from anycost_jax import elastic, sharding
from anycost_jax.models.generator import Generator
from anycost_jax.sharding import AXIS
from anycost_jax.convert.inception import load_inception
from anycost_jax.models.inception import INPUT_SIZE, resize_bilinear
from anycost_jax.render import SubConfig

__all__ = ['FIDStats', 'FeatureExtractor', 'frechet_distance', 'real_stats', 'fake_features', 'fid_for_configs',
           'load_stats', 'sample_latents', 'default_batch_size', 'config_label', 'STATS_HINT']

# How to make a missing statistics file; shown in errors.
STATS_HINT = ('compute it once with `anycost_jax.eval.fid.real_stats(dataset, resolution, n_images=50000)'
              '.save(path)` (the same dataset, resolution and split as the generator was trained on)')
DEFAULT_N_IMAGES = 50000
_CPU_PER_DEVICE_BATCH = 4
_MAX_PER_DEVICE_BATCH = 64


# --------------------------------------------------------------------------- Frechet distance


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """``|mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))`` in float64, as pytorch-fid.

    A singular product gets ``eps`` added to both diagonals; a small imaginary part of the
    matrix square root (numerical noise) is dropped, a large one (diagonal not within 1e-3 of
    real) is an error.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f'mean vectors have different shapes: {mu1.shape} vs {mu2.shape}')
    if sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f'covariances have shapes {sigma1.shape} and {sigma2.shape}; expected {mu1.shape * 2}')
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        warnings.warn(f'FID: the product of the covariances is singular; adding {eps} to their diagonals')
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f'FID: the square root of sigma1 @ sigma2 has an imaginary component of '
                             f'{np.max(np.abs(covmean.imag)):.3g}')
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


# --------------------------------------------------------------------------- statistics


@dataclasses.dataclass
class FIDStats:
    """Feature statistics: mean ``mu`` [D], covariance ``sigma`` [D, D] (float64, ``np.cov``'s n-1)."""
    mu: np.ndarray
    sigma: np.ndarray
    n_images: int
    resolution: Optional[int] = None  # side of the images the features came from
    dataset: str = ''                 # dataset name, or the sub-generator's label

    @classmethod
    def from_features(cls, features, **meta) -> 'FIDStats':
        """Statistics of a feature matrix [N, D] (``meta``: resolution, dataset)."""
        m = _Moments()
        m.add(features)
        return m.stats(**meta)

    def fid(self, other: 'FIDStats') -> float:
        return frechet_distance(self.mu, self.sigma, other.mu, other.sigma)

    def save(self, path) -> None:
        """Writes ``.npz`` with keys mu, sigma, n_images, resolution, dataset (atomically)."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix='.npz', dir=folder)
        try:
            with os.fdopen(fd, 'wb') as f:
                np.savez(f, mu=self.mu, sigma=self.sigma, n_images=np.int64(self.n_images),
                         resolution=np.int64(-1 if self.resolution is None else self.resolution),
                         dataset=np.str_(self.dataset))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    @classmethod
    def load(cls, path, resolution: Optional[int] = None) -> 'FIDStats':
        return load_stats(path, resolution)


def load_stats(path, resolution: Optional[int] = None) -> FIDStats:
    """Reads statistics written by :meth:`FIDStats.save`; checks ``resolution`` when given."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'FID statistics file {path!r} does not exist; {STATS_HINT}')
    with np.load(path, allow_pickle=False) as f:
        missing = {'mu', 'sigma'} - set(f.files)
        if missing:
            raise ValueError(f'{path} is not an FID statistics file: no {sorted(missing)} (keys: {f.files})')
        res = int(f['resolution']) if 'resolution' in f.files else -1
        stats = FIDStats(mu=f['mu'].astype(np.float64), sigma=f['sigma'].astype(np.float64),
                         n_images=int(f['n_images']) if 'n_images' in f.files else 0,
                         resolution=None if res < 0 else res,
                         dataset=str(f['dataset']) if 'dataset' in f.files else '')
    if resolution is not None and stats.resolution is not None and stats.resolution != resolution:
        raise ValueError(f'FID statistics {path} are for {stats.resolution} px images but {resolution} px images '
                         f'are evaluated; use statistics of the real images at {resolution} px ({STATS_HINT})')
    return stats


class _Moments:
    """Running mean and covariance in float64 (sums shifted by the first batch's mean)."""

    def __init__(self):
        self.n, self.shift, self.s, self.ss = 0, None, None, None

    def add(self, features: np.ndarray) -> None:
        f = np.asarray(features, np.float64)
        if not len(f):
            return
        if self.shift is None:
            self.shift = f.mean(0)
            self.s, self.ss = np.zeros_like(self.shift), np.zeros((f.shape[1],) * 2)
        f = f - self.shift
        self.n += len(f)
        self.s += f.sum(0)
        self.ss += f.T @ f

    def stats(self, **meta) -> FIDStats:
        if self.n < 2:
            raise ValueError(f'FID statistics need at least 2 images, got {self.n}')
        mean = self.s / self.n
        sigma = (self.ss - self.n * np.outer(mean, mean)) / (self.n - 1)
        return FIDStats(mu=mean + self.shift, sigma=(sigma + sigma.T) / 2, n_images=self.n, **meta)


# --------------------------------------------------------------------------- sharding helpers


def default_batch_size(resolution: int = 256, gen: Optional[Generator] = None) -> int:
    """A global batch (a multiple of the device count) that fits in device memory.

    Per device: a quarter of the free memory reported by ``memory_stats()`` divided by a
    deliberately pessimistic per-image estimate -- 64 MiB for the Inception plus, with a
    generator, 8 live float32 copies of the widest top-resolution activation -- capped at
    64; without memory statistics (CPU) 4.
    """
    dev = jax.local_devices()[0]
    stats = None
    try:
        stats = dev.memory_stats()
    except Exception:  # noqa: BLE001 -- not every backend implements it
        pass
    if not stats or 'bytes_limit' not in stats:
        per_device = _CPU_PER_DEVICE_BATCH
    else:
        free = stats['bytes_limit'] - stats.get('bytes_in_use', 0)
        per_image = 64 << 20
        if gen is not None:
            per_image += 8 * 4 * resolution * resolution * max(gen.full_channels()[-2:])
        per_device = int(min(_MAX_PER_DEVICE_BATCH, max(1, free // 4 // per_image)))
    return per_device * jax.device_count()


def _round_batch(batch_size: Optional[int], resolution: int, gen: Optional[Generator] = None) -> int:
    if batch_size is None:
        return default_batch_size(resolution, gen)
    if batch_size < 1:
        raise ValueError(f'batch_size must be positive, got {batch_size}')
    n = jax.device_count()
    return -(-batch_size // n) * n


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit='img', disable=not enabled or jax.process_index() != 0,
                dynamic_ncols=True)


# --------------------------------------------------------------------------- features


class FeatureExtractor:
    """Sharded image embedding: NHWC float images in [-1, 1], any size -> float32 [N, D].

    ``FeatureExtractor()`` loads pytorch-fid's FID Inception (downloaded once, see
    :func:`anycost_jax.convert.inception.inception_weights`; ``weights`` takes a local file or
    URL). Any other Flax ``model`` with its ``variables`` can stand in (``model.apply(variables,
    x) -> [N, D]``); images are resized to ``input_size`` (None: as they are) in a per-size
    program before the trunk, so the trunk compiles once whatever the image sizes.
    """

    def __init__(self, model: Optional[nn.Module] = None, variables: Optional[dict] = None, *,
                 weights: Optional[str] = None, cache_dir: Optional[str] = None,
                 input_size: Optional[int] = INPUT_SIZE):
        if model is None:
            model, variables = load_inception(weights, cache_dir, resize_input=False)
        elif variables is None:
            raise ValueError('pass the variables of the feature model with it')
        self.model, self.input_size = model, input_size
        self.mesh = sharding.data_mesh()
        self.variables = sharding.replicate(variables, self.mesh)
        spec = P(AXIS)
        self._trunk = jax.jit(jax.shard_map(lambda v, x: model.apply(v, x).astype(jnp.float32), mesh=self.mesh,
                                            in_specs=(P(), spec), out_specs=spec))
        self._resize = jax.jit(jax.shard_map(self.prepare, mesh=self.mesh, in_specs=spec, out_specs=spec))

    def prepare(self, images):
        """Per-device preprocessing of images in [-1, 1]: the resize to ``input_size``."""
        images = jnp.asarray(images, jnp.float32)
        return images if self.input_size is None else resize_bilinear(images, self.input_size)

    def embed_global(self, images):
        """Global array of prepared images split over ``data`` -> features split over ``data`` (async)."""
        return self._trunk(self.variables, images)

    def local_batch_multiple(self) -> int:
        return jax.local_device_count()

    def __call__(self, images) -> np.ndarray:
        """This process's images (NHWC, [-1, 1]) -> features of every process's images ``[N, D]``.

        Every process must pass the same number of images; the result is process-major (this
        process's rows at ``process_index * n``) and identical on every process.
        """
        return self.finish(*self.start(images))

    def start(self, images, pad_to: int = 0):
        """Dispatches the embedding of this process's images; :meth:`finish` collects it.

        The batch is padded with zeros to a multiple of the local device count, and to at least
        ``pad_to`` images (so that a short last batch does not compile the network again).
        """
        x = np.asarray(images, np.float32)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f'expected NHWC RGB images [N, H, W, 3], got shape {x.shape}')
        n = len(x)
        if n == 0:
            raise ValueError('no images given')
        m = self.local_batch_multiple()
        pad = max(n, pad_to) - n
        pad += -(n + pad) % m
        if pad:
            x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
        g = sharding.shard(x, self.mesh)
        if self.input_size is not None and x.shape[1:3] != (self.input_size, self.input_size):
            g = self._resize(g)
        return self.embed_global(g), n

    @staticmethod
    def finish(features, n_local: int) -> np.ndarray:
        return sharding.gather_rows(sharding.local_rows(features), n_local)


def _extractor(extractor: Optional[FeatureExtractor]) -> FeatureExtractor:
    return FeatureExtractor() if extractor is None else extractor


# --------------------------------------------------------------------------- real images


def _as_float_level(item, resolution: int) -> np.ndarray:
    """The [-1, 1] float images at ``resolution`` from one iterator item (array or pyramid tuple)."""
    levels = item if isinstance(item, (tuple, list)) else (item,)
    sizes = []
    for x in levels:
        x = np.asarray(x)
        sizes.append(x.shape[1] if x.ndim == 4 else None)
        if x.ndim == 4 and x.shape[1] == resolution and x.shape[2] == resolution:
            if x.dtype == np.uint8:
                from anycost_jax.data.pipeline import to_float
                return to_float(x)
            return x.astype(np.float32)
    raise ValueError(f'the real-image batches have sizes {sizes}, none at the requested resolution {resolution}')


def real_stats(source, resolution: int, n_images: int = DEFAULT_N_IMAGES, batch_size: Optional[int] = None, *,
               source_resolution: Optional[int] = None, data_dir=None, manual_dir=None, split: str = 'train',
               image_key: str = 'image', seed: int = 0, flip: bool = False, name: Optional[str] = None,
               extractor: Optional[FeatureExtractor] = None, progress: bool = True) -> FIDStats:
    """Feature statistics of ``n_images`` real images at ``resolution`` px, through the input pipeline.

    ``source``: a dataset name or TFDS builder (:func:`anycost_jax.data.pipeline.load_source`),
    an indexable source (``ArraySource`` ...) or uint8 array [n, r, r, 3], read in the training
    order of ``seed`` (a shuffled subset, like the original's shuffled loader) without flips by
    default; or an iterator (or list) of this process's batches (uint8 or [-1, 1] float, an array or a
    pyramid tuple such as ``InputIterator`` yields), used as it comes.
    Images are mapped to [-1, 1] as the trainer does. With ``source_resolution`` (a power-of-two
    multiple of ``resolution``) the images are read at that size and resized by the
    pipeline's pyramid (PIL bilinear, as the original), exactly as the discriminator sees lower-resolution reals.
    """
    from anycost_jax.data import pipeline
    ext = _extractor(extractor)
    batch = _round_batch(batch_size, resolution)
    n_proc = jax.process_count()
    if batch % n_proc:
        batch = -(-batch // n_proc) * n_proc
    if isinstance(source, (list, tuple)):
        source = iter(source)
    is_iterator = hasattr(source, '__next__')
    owned = None
    if is_iterator:
        it, label = source, name or getattr(source, 'name', '') or 'iterator'
    else:
        src_res = source_resolution or resolution
        if src_res % resolution or (src_res // resolution) & (src_res // resolution - 1):
            raise ValueError(f'source_resolution {src_res} is not a power-of-two multiple of {resolution}')
        n_res = int(math.log2(src_res // resolution)) + 1
        if isinstance(source, np.ndarray):
            label = name or 'array'
            src = pipeline.ArraySource(source)
        elif hasattr(source, 'get') and hasattr(source, '__len__'):
            label, src = name or type(source).__name__, source
        else:
            label = name or (source if isinstance(source, str) else source.info.full_name)
            src = pipeline.load_source(source, src_res, data_dir=data_dir, manual_dir=manual_dir, split=split,
                                       image_key=image_key)
        if n_images > len(src):
            raise ValueError(f'{label} has {len(src)} images, fewer than n_images={n_images}')
        global_batch = min(batch, len(src) // n_proc * n_proc)
        owned = it = pipeline.InputIterator(src, resolution=src_res, n_res=n_res, global_batch=global_batch, seed=seed,
                                            process_index=jax.process_index(), process_count=n_proc, flip=flip,
                                            name=str(label))
    moments = _Moments()
    bar = _progress(n_images, f'real features {label}@{resolution}', progress)
    pending, dispatched, first = None, 0, 0
    try:
        while dispatched < n_images:  # one batch in flight while the previous one is collected
            try:
                item = next(it)
            except StopIteration:
                raise ValueError(f'the real images ran out after {dispatched} of n_images={n_images}') from None
            x = _as_float_level(item, resolution)
            want = min(len(x) * n_proc, n_images - dispatched)
            first = first or len(x)
            launched = (*ext.start(x, pad_to=first), want)
            dispatched += want
            if pending:
                _finish(pending, moments, bar)
            pending = launched
        if pending:
            _finish(pending, moments, bar)
    finally:
        bar.close()
        if owned is not None:
            owned.close()
    return moments.stats(resolution=resolution, dataset=str(label))


def _finish(pending, moments: _Moments, bar) -> None:
    features, n_local, want = pending
    f = FeatureExtractor.finish(features, n_local)[:want]
    moments.add(f)
    bar.update(len(f))


# --------------------------------------------------------------------------- fake images


def _as_config(c) -> SubConfig:
    if c is None:
        return SubConfig()
    if isinstance(c, SubConfig):
        return dataclasses.replace(c, channels=tuple(int(x) for x in c.channels)) if c.channels is not None else c
    if isinstance(c, (int, float)):
        return SubConfig(channel_ratio=float(c))
    if isinstance(c, Mapping):
        return _as_config(SubConfig(**c))
    raise TypeError(f'a sub-generator config is a SubConfig, a channel ratio, a dict of SubConfig fields or None; '
                    f'got {c!r}')


def config_label(gen: Generator, cfg: SubConfig) -> str:
    """``'{ratio}x@{res}'`` (``'1.0x@...'`` for the full width, ``'flexible@...'`` for per-layer widths)."""
    return cfg.label(gen)


def _labels(gen: Generator, configs: Sequence[SubConfig]) -> list[str]:
    return elastic.unique_labels([config_label(gen, c) for c in configs])


def sample_latents(gen: Generator, seed, indices, noise: bool = True):
    """``(z [n, style_dim], noise list | None)`` of samples ``indices``: sample i from ``fold_in(key(seed), i)``.

    The noise (one [n, r, r, 1] array per noise layer, full generator) is what ``noise_mode='random'``
    uses in :func:`fake_features`; layers above a config's resolution are never computed.
    """
    key = jax.random.key(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(indices, jnp.uint32))
    z = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0), (gen.style_dim,)))(keys)
    if not noise:
        return z, None
    out = []
    for layer, hw in enumerate(gen.noise_shapes()):
        out.append(jax.vmap(lambda k, hw=hw, layer=layer: jax.random.normal(jax.random.fold_in(k, layer + 1),
                                                                             hw + (1,)))(keys))
    return z, out


@functools.lru_cache(maxsize=64)
def _fake_program(gen: Generator, cfg: SubConfig, truncation: float, noise_mode: str, mesh, input_size):
    """jit(shard_map): (variables, seed, indices) -> prepared fake images, split over ``data``."""
    if noise_mode not in ('random', 'const'):
        raise ValueError(f"noise_mode={noise_mode!r} is not supported; expected 'random' (the original's FID) "
                         "or 'const' (the stored noise buffers)")

    def body(variables, seed, idx):
        z, noise = sample_latents(gen, seed, idx, noise=noise_mode == 'random')
        img = gen.apply(variables, z, channel_ratio=cfg.channel_ratio, channels=cfg.channels,
                        target_res=cfg.target_res, truncation=truncation, noise_mode='const', noise=noise)
        img = jnp.clip(img.astype(jnp.float32), -1., 1.)
        return img if input_size is None else resize_bilinear(img, input_size)

    return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P(), P(), P(AXIS)), out_specs=P(AXIS)))


def fake_features(gen: Generator, variables: dict, configs: Sequence[Any], n_images: int = DEFAULT_N_IMAGES,
                  batch_size: Optional[int] = None, seed: int = 0, *, truncation: float = 1.,
                  noise_mode: str = 'random', extractor: Optional[FeatureExtractor] = None,
                  progress: bool = True) -> list[FIDStats]:
    """Feature statistics of ``n_images`` fakes of every sub-generator config, on the same latents.

    ``configs``: :class:`~anycost_jax.render.SubConfig` (``channel_ratio`` or per-layer
    ``channels``, and ``target_res``), a bare channel ratio, or None (the full generator).
    One pass over the latent batches; per batch every config runs its own compiled program.
    Returns one :class:`FIDStats` per config, in order (``dataset`` = the config's label).
    """
    cfgs = [_as_config(c) for c in configs]
    if not cfgs:
        raise ValueError('no sub-generator configs given')
    for c in cfgs:  # validate every config before any work
        gen.resolve_channels(c.channel_ratio, c.channels)
        gen.check_target_res(c.target_res)
    ext = _extractor(extractor)
    batch = _round_batch(batch_size, gen.top_res, gen)
    n_proc, proc = jax.process_count(), jax.process_index()
    local = batch // n_proc
    gvars = sharding.replicate(variables, ext.mesh)
    seed_arr = sharding.replicate(np.uint32(seed), ext.mesh)
    programs = [_fake_program(gen, c, float(truncation), noise_mode, ext.mesh, ext.input_size) for c in cfgs]
    labels = _labels(gen, cfgs)
    moments = [_Moments() for _ in cfgs]
    bar = _progress(n_images, f'fake features ({len(cfgs)} configs)', progress)
    pending = []
    try:
        for start in range(0, n_images, batch):
            idx = np.arange(start + proc * local, start + (proc + 1) * local, dtype=np.uint32)
            g_idx = sharding.shard(idx, ext.mesh)
            want = min(batch, n_images - start)
            launched = [(ext.embed_global(prog(gvars, seed_arr, g_idx)), local, want) for prog in programs]
            _collect(pending, moments, bar)  # the previous batch, while this one runs
            pending = launched
        _collect(pending, moments, bar)
    finally:
        bar.close()
    return [m.stats(resolution=c.target_res or gen.top_res, dataset=lab)
            for m, c, lab in zip(moments, cfgs, labels)]


def _collect(pending, moments, bar) -> None:
    for m, p in zip(moments, pending):
        m.add(FeatureExtractor.finish(p[0], p[1])[:p[2]])
    if pending:
        bar.update(pending[0][2])


# --------------------------------------------------------------------------- FID


def _real_for(real, resolution: int, label: str) -> FIDStats:
    if isinstance(real, Mapping):
        if resolution not in real:
            raise ValueError(f'no real statistics at {resolution} px for {label} (given: {sorted(real)} px); '
                             f'{STATS_HINT}')
        real = real[resolution]
    stats = real if isinstance(real, FIDStats) else load_stats(real)
    if stats.resolution is not None and stats.resolution != resolution:
        where = '' if isinstance(real, FIDStats) else f' ({os.fspath(real)})'
        raise ValueError(f'the real statistics{where} are for {stats.resolution} px images but {label} renders '
                         f'{resolution} px images; use statistics of the real images at {resolution} px: '
                         f'{STATS_HINT}')
    return stats


def fid_for_configs(gen: Generator, variables: dict, configs: Sequence[Any],
                    real: Union[FIDStats, str, os.PathLike, Mapping[int, Any]], n_images: int = DEFAULT_N_IMAGES,
                    batch_size: Optional[int] = None, seed: int = 0, *, truncation: float = 1.,
                    noise_mode: str = 'random', extractor: Optional[FeatureExtractor] = None,
                    progress: bool = True) -> dict[str, float]:
    """``{label: FID}`` of every sub-generator config (see :func:`fake_features`) against ``real``.

    ``real``: statistics (an :class:`FIDStats` or a ``.npz`` path) at the configs' output
    resolution, or a mapping ``{resolution: statistics}`` when the configs render several.
    Every config's resolution is checked against its statistics before anything is generated.
    """
    cfgs = [_as_config(c) for c in configs]
    labels = _labels(gen, cfgs)
    reals = [_real_for(real, c.target_res or gen.top_res, lab) for c, lab in zip(cfgs, labels)]
    fakes = fake_features(gen, variables, cfgs, n_images, batch_size, seed, truncation=truncation,
                          noise_mode=noise_mode, extractor=extractor, progress=progress)
    return {lab: f.fid(r) for lab, f, r in zip(labels, fakes, reals)}
