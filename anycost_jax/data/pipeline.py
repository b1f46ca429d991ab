"""The training input: a deterministic, per-host stream of resolution pyramids.

    it = create_input_iter('ffhq', resolution=1024, n_res=4, global_batch=32, seed=0,
                           start_step=state.step, manual_dir='~/ffhq')
    images = next(it)  # (x1024, x512, x256, x128): float32 NHWC in [-1, 1], this host's share

Order. Example positions form one endless stream: global step s covers positions
[s * B, (s + 1) * B) of it. Position p is example `perm_e[p % n]` of epoch e = p // n,
where perm_e sorts the hashes of (seed, e, i) over the n example indices. Host h of H takes
the contiguous slice [h * B/H, (h + 1) * B/H) of each global batch. A batch may straddle two
epochs; every epoch is a full permutation, nothing is dropped. The flip of position p is
bit 0 of hash(seed, p); every level shows the same orientation. Levels are resized from the
example with PIL's bilinear filter, then flipped, as the original's transforms. Everything is
a pure function of (seed, step, dataset size), computed with
`hashing` rather than a stateful generator: `start_step=k` yields exactly the k-th batch of
a fresh iterator, on any number of hosts and any NumPy version.

Reading. A split whose decoded uint8 size at `resolution` is at most `in_memory_bytes`
(default 2 GiB per host: the 10k procedural scenes at 64 px are 123 MB, FFHQ at 64 px 860 MB,
CIFAR-10 at 32 px 150 MB) is decoded once into memory at start-up, so a step only gathers
and converts. A larger split is read by index every step: ArrayRecord files through
`tfds.data_source` (our builders are prepared that way; prepare catalog datasets with
`--file_format=array_record`), decoded in a thread pool. A background thread keeps
`prefetch` batches ready either way. A TFRecord-only split (the `tfds build` default) has no
random access, so it must fit in memory.

Preparation. 'anycost_shapes' is generated on first use, and 'ffhq' is built from
`manual_dir` on first use (into `data_dir`). Other catalog datasets are never downloaded:
prepare them beforehand. With several hosts sharing one `data_dir`, prepare once before
launching (e.g. call this function on one host), since concurrent preparations race.
"""
import concurrent.futures
import logging
import os
import queue
import threading
import weakref
from typing import Optional

import jax
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from anycost_jax.data import builders, hashing

log = logging.getLogger(__name__)

IN_MEMORY_BYTES = 2 << 30
EMBEDDED = {'anycost_shapes': builders.SHAPES_RESOLUTIONS, 'ffhq': builders.FFHQ_RESOLUTIONS}
_PERM_STREAM, _FLIP_STREAM = 0x9E12, 0xF11B


# ---------------------------------------------------------------------------- sources


class ArraySource:
    """Examples held in memory: uint8 [n, r, r, 3]."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self):
        return len(self.images)

    def get(self, indices, pool=None):
        del pool
        return self.images[np.asarray(indices)]


class RandomAccessSource:
    """Examples read by index from a `tfds.data_source` and made square RGB at `resolution`."""

    def __init__(self, data_source, resolution: int, image_key: str = 'image'):
        self.ds, self.resolution, self.image_key = data_source, resolution, image_key

    def __len__(self):
        return len(self.ds)

    def _one(self, i):
        return builders.square_rgb(self.ds[int(i)][self.image_key], self.resolution)

    def get(self, indices, pool=None):
        images = pool.map(self._one, indices) if pool is not None else map(self._one, indices)
        return np.stack(list(images))


def _builder(dataset, resolution, data_dir):
    if isinstance(dataset, tfds.core.DatasetBuilder):
        return dataset, False
    name = dataset
    base = name.split('/')[0].split(':')[0]
    ours = base in EMBEDDED
    if ours and '/' not in name:
        if resolution not in EMBEDDED[base]:
            raise ValueError(f"dataset '{base}' has configs for resolutions {EMBEDDED[base]}, not {resolution}")
        name = f'{name}/{resolution}'
    kwargs = {'file_format': 'array_record'} if ours else {}
    try:
        return tfds.builder(name, data_dir=data_dir, **kwargs), ours
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(
            f"unknown dataset '{dataset}': not one of {sorted(EMBEDDED)} nor a TFDS catalog name "
            f"(tfds.list_builders())") from e


def load_source(dataset, resolution: int, *, data_dir=None, manual_dir=None, split='train',
                image_key='image', in_memory_bytes=IN_MEMORY_BYTES, num_workers=None):
    """An indexable source of uint8 [r, r, 3] examples; prepares our own datasets if needed.

    A split whose decoded size at `resolution` is at most `in_memory_bytes` is decoded once
    into memory (`ArraySource`); a larger one is read by index on every step
    (`RandomAccessSource`), which needs array_record files.
    """
    builder, ours = _builder(dataset, resolution, data_dir)
    name = builder.info.full_name
    if not builder.is_prepared():
        if not ours and not isinstance(dataset, tfds.core.DatasetBuilder):
            raise FileNotFoundError(
                f"TFDS dataset '{dataset}' is not prepared in {builder.data_dir_root}, and this pipeline "
                'never downloads. Prepare it once on a machine with network access and copy the data '
                f'dir here: `tfds build {dataset} --data_dir={builder.data_dir_root} '
                f"--file_format=array_record` (or tfds.builder('{dataset}', data_dir=..., "
                "file_format='array_record').download_and_prepare()).")
        log.info('Preparing %s in %s', name, builder.data_dir_root)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=None if manual_dir is None else os.path.expanduser(os.fspath(manual_dir)),
            try_download_gcs=False))
    if image_key not in builder.info.features:
        raise ValueError(f"dataset {name} has no '{image_key}' feature "
                         f'(features: {list(builder.info.features)})')
    if split not in builder.info.splits:
        raise ValueError(f"dataset {name} has no split '{split}' (splits: {list(builder.info.splits)})")
    n = builder.info.splits[split].num_examples
    need = n * resolution * resolution * 3
    try:
        source = RandomAccessSource(builder.as_data_source(split), resolution, image_key)
    except Exception as e:  # not prepared as array_record: no random access
        if need > in_memory_bytes:
            raise ValueError(
                f'dataset {name} is not stored as array_record ({e}), and holding its {n} examples at '
                f'{resolution} px in memory needs {need / 2**30:.2f} GiB > in_memory_bytes='
                f'{in_memory_bytes / 2**30:.2f} GiB. Re-prepare it with '
                '`--file_format=array_record`.') from e
        log.info('%s has no random access (%s); decoding its %d examples into memory', name, e, n)
        images = np.empty((n, resolution, resolution, 3), np.uint8)
        i = -1
        for i, ex in enumerate(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))):
            images[i] = builders.square_rgb(ex[image_key], resolution)
        return ArraySource(images[:i + 1])
    if need > in_memory_bytes:
        return source
    log.info('Decoding the %d examples of %s into memory (%.0f MB)', n, name, need / 2**20)
    images = np.empty((len(source), resolution, resolution, 3), np.uint8)
    chunks = np.array_split(np.arange(len(source)), max(1, len(source) // 256))
    with concurrent.futures.ThreadPoolExecutor(num_workers or _default_workers()) as pool:
        for chunk, decoded in zip(chunks, pool.map(source.get, chunks)):
            images[chunk] = decoded
    return ArraySource(images)


def _default_workers():
    return min(8, os.cpu_count() or 1)


# ---------------------------------------------------------------------------- batches


def resize_like_original(images_uint8: np.ndarray, size: int) -> np.ndarray:
    """uint8 NHWC -> uint8 [n, size, size, 3] with PIL's antialiased bilinear filter.

    The original's ``MultiResize`` builds every level with ``transforms.Resize(r, BILINEAR)``
    from the source image, i.e. ``PIL.Image.resize``: a triangle filter widened by the scale
    factor (4 taps per axis at a factor 2), computed in PIL's fixed point with uint8 rounding.
    """
    if images_uint8.shape[1] == size and images_uint8.shape[2] == size:
        return images_uint8
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images_uint8])


def to_float(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [-1, 1], as ``ToTensor`` + ``Normalize(0.5, 0.5)``."""
    return images_uint8.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1)


def make_pyramid(images_uint8: np.ndarray, n_res: int, flips: Optional[np.ndarray] = None):
    """uint8 NHWC -> tuple of n_res float32 arrays in [-1, 1], full resolution first.

    Every level is resized from the source (:func:`resize_like_original`), and ``flips``
    (bool [n]) mirrors the chosen examples after resizing, at every level, in the original's
    order (``MultiResize`` then ``GroupRandomHorizontalFlip``).
    """
    size = images_uint8.shape[1]
    levels = [resize_like_original(images_uint8, size >> i) for i in range(n_res)]
    if flips is not None and flips.any():
        levels = [np.where(flips[:, None, None, None], x[:, :, ::-1], x) for x in levels]
    return tuple(to_float(x) for x in levels)


def host_share(global_batch: int, process_index=None, process_count=None) -> tuple[int, int]:
    """``(process_index, process_count)`` (defaults: this process of ``jax``'s), checked: every host
    builds an equal, contiguous share of each global batch."""
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f'process_index {process_index} not in [0, process_count={process_count})')
    if global_batch < 1 or global_batch % process_count:
        raise ValueError(f'global_batch {global_batch} must be a positive multiple of the process '
                         f'count {process_count}, so that every host builds an equal share')
    return process_index, process_count


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.argsort(hashing.hash64(seed, _PERM_STREAM, epoch, np.arange(n)), kind='stable')


class InputIterator:
    """Iterates over this host's share of global batches `start_step`, `start_step + 1`, ...

    `batch(step)` computes any batch directly (a pure function); `step` is the global step of
    the next batch `next()` returns. Call `close()` (or use as a context manager) to stop the
    prefetch thread early.
    """

    def __init__(self, source, *, resolution, n_res, global_batch, seed, start_step=0,
                 process_index=0, process_count=1, flip=True, prefetch=2, num_workers=None,
                 name='dataset'):
        self.source, self.n = source, len(source)
        self.resolution, self.n_res, self.global_batch = resolution, n_res, global_batch
        self.seed, self.flip = seed, flip
        self.process_index, self.process_count = process_index, process_count
        self.local_batch = global_batch // process_count
        if self.n < global_batch:
            raise ValueError(f'{name} has {self.n} examples, fewer than one global batch of '
                             f'{global_batch}; use a smaller batch or a larger dataset')
        self.step = start_step
        self._perms, self._perm_lock = {}, threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(num_workers or _default_workers())
        self._queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        # The thread holds only a weak reference, so a forgotten iterator is still collected.
        self._thread = threading.Thread(
            target=_produce, args=(weakref.ref(self), start_step, self._queue, self._stop),
            daemon=True, name='anycost-input')
        self._thread.start()

    def _perm(self, epoch):
        with self._perm_lock:
            if epoch not in self._perms:
                if len(self._perms) >= 4:
                    del self._perms[min(self._perms)]
                self._perms[epoch] = epoch_permutation(self.seed, epoch, self.n)
            return self._perms[epoch]

    def positions(self, step: int) -> np.ndarray:
        """Stream positions of this host's examples in global batch `step`."""
        start = step * self.global_batch + self.process_index * self.local_batch
        return start + np.arange(self.local_batch, dtype=np.int64)

    def indices(self, step: int):
        """(example indices, flip flags) of this host's share of global batch `step`."""
        pos = self.positions(step)
        epochs, within = pos // self.n, pos % self.n
        idx = np.empty_like(pos)
        for e in np.unique(epochs):
            sel = epochs == e
            idx[sel] = self._perm(int(e))[within[sel]]
        flips = (hashing.hash64(self.seed, _FLIP_STREAM, pos) & np.uint64(1)).astype(bool)
        return idx, flips & bool(self.flip)

    def batch(self, step: int):
        idx, flips = self.indices(step)
        return make_pyramid(self.source.get(idx, self._pool), self.n_res, flips)

    def __iter__(self):
        return self

    def __next__(self):
        if self._stop.is_set():
            raise StopIteration
        images, error = self._queue.get()
        if error is not None:
            self.close()
            raise error
        self.step += 1
        return images

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if hasattr(self, '_thread') and not self._stop.is_set():
            self._stop.set()
            try:
                self._pool.shutdown(wait=False, cancel_futures=True)
            except Exception:  # interpreter shutdown
                pass


def _produce(ref, step, out, stop):
    """Background loop: compute batch `step`, `step + 1`, ... into `out` until stopped."""
    while not stop.is_set():
        it = ref()
        if it is None:
            return
        try:
            item = (it.batch(step), None)
        except BaseException as e:  # handed to the consumer, which re-raises it
            item = (None, e)
        del it
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                break
            except queue.Full:
                if ref() is None:
                    return
        if item[1] is not None:
            return
        step += 1


def create_input_iter(dataset, resolution: int, n_res: int, global_batch: int, seed: int,
                      start_step: int = 0, data_dir=None, manual_dir=None, process_index=None,
                      process_count=None, flip=True, *, split='train', image_key='image',
                      prefetch=2, num_workers=None,
                      in_memory_bytes=IN_MEMORY_BYTES) -> InputIterator:
    """This host's stream of real-image pyramids for training; see the module docstring.

    Args:
      dataset: 'anycost_shapes' (generated on first use), 'ffhq' (built from `manual_dir` on
        first use), any prepared TFDS catalog image dataset name ('cifar10', 'mnist',
        'celeb_a_hq/256', ...), or a `tfds.core.DatasetBuilder` instance.
      resolution: side of level 0; our datasets use the config of this resolution, others are
        center-cropped and resized.
      n_res: pyramid levels: resolution, resolution / 2, ...
      global_batch: examples per step over all hosts; a multiple of process_count.
      seed: the order and flips; with `start_step` it fixes the stream exactly.
      start_step: the global step of the first batch (resume).
      process_index, process_count: this host and the host count (default: from jax).
    Returns:
      An `InputIterator` yielding tuples of n_res float32 arrays in [-1, 1],
      [global_batch // process_count, r, r, 3] with r = resolution / 2**level.
    """
    process_index, process_count = host_share(global_batch, process_index, process_count)
    if n_res < 1 or resolution % (1 << (n_res - 1)):
        raise ValueError(f'resolution {resolution} cannot be halved {n_res - 1} times (n_res={n_res})')
    if start_step < 0:
        raise ValueError(f'start_step must be >= 0, got {start_step}')
    source = load_source(dataset, resolution, data_dir=data_dir, manual_dir=manual_dir, split=split,
                         image_key=image_key, in_memory_bytes=in_memory_bytes,
                         num_workers=num_workers)
    name = dataset.info.full_name if isinstance(dataset, tfds.core.DatasetBuilder) else dataset
    return InputIterator(source, resolution=resolution, n_res=n_res, global_batch=global_batch,
                         seed=seed, start_step=start_step, process_index=process_index,
                         process_count=process_count, flip=flip, prefetch=prefetch,
                         num_workers=num_workers, name=f"dataset '{name}' (split '{split}')")
