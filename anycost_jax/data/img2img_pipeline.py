"""Deterministic per-host training streams for the image-to-image family (pix2pix, CycleGAN, GauGAN).

    source = load_img2img_source('paired_images/edges2shoes-r', 'train', manual_dir='~/edges2shoes-r')
    it = PairedStream(source, global_batch=4, seed=0, start_step=state.step, direction='AtoB')
    batch = next(it)  # {'A': input, 'B': target}: float32 [4 // hosts, 256, 256, 3] in [-1, 1]

Preprocessing is the original's (mit-han-lab/gan-compression, data/base_dataset.py), on PIL
images as there: `Preprocess(mode, load_size, crop_size, no_flip)` with mode one of
resize_and_crop (the default: resize to load_size x load_size, then a crop_size crop),
crop, scale_width, scale_width_and_crop, none (sides rounded to multiples of 4), then a
horizontal flip unless no_flip. Photos are resized with BICUBIC and become float32 NHWC,
(x / 255 - 0.5) / 0.5 as ToTensor + Normalize; label and instance maps use NEAREST and become
int32 [N, H, W] ids.

* Paired data (`PairedStream`, and `CityscapesStream` for label / instance / image): one set of
  crop and flip parameters per example, shared by all its images, drawn from the size of its
  first image (A, or the label map) as the original's `get_params`.
* Unpaired data (`UnpairedStream`): A and B are transformed independently, as the original's
  unaligned dataset does (its `RandomCrop(crop_size)`: always square, and an image smaller than
  the crop is an error). An epoch is max(len A, len B) positions; the A image of a position is
  `perm[p % n] % len(A)`, and B is drawn uniformly at random per position (the original's
  default serial_batches=False).
* `direction='BtoA'` swaps A and B in the output, so 'A' is always the generator's input.

Determinism. Order, host slices and prefetching are `pipeline.InputIterator`'s: global step s
covers stream positions [s * B, (s + 1) * B); position p is example `perm_e[p % n]` of epoch
e = p // n; host h of H builds only positions [s * B + h * B/H, s * B + (h + 1) * B/H). Every
random decision (crop offsets, flips, the B index) is a hash of (seed, position), so a batch is
a pure function of (seed, step, dataset size): a run resumed at step k sees exactly the batches
an uninterrupted one would, on any number of hosts.

Sources. A source has `len()` and `get(indices, pool=None) -> {key: [uint8 array per example]}`
(lists, since native-size images may differ in size). `load_img2img_source` opens one of our
prepared builders by random access (preparing it from `manual_dir` first if needed);
`Img2ImgArraySource` holds arrays in memory; `procedural_source` wraps the embedded
procedural tasks. Unpaired streams take an `UnpairedSource(a, b)` of two 'image' sources.
"""
import dataclasses
import os
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from anycost_jax.data import hashing, img2img_builders, procedural_img2img
from anycost_jax.data.pipeline import InputIterator, host_share

MODES = ('resize_and_crop', 'crop', 'scale_width', 'scale_width_and_crop', 'none')
DIRECTIONS = ('AtoB', 'BtoA')
CITYSCAPES_UNKNOWN_LABEL = 35  # the original sets label 255 to input_nc, 35 for Cityscapes
_DRAW_STREAM, _B_STREAM = 0xC40B, 0xB1DE
_SIDE_PAIRED, _SIDE_A, _SIDE_B = 0, 1, 2  # independent draws per transformed image group


# ---------------------------------------------------------------------------- preprocessing


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """The original's --preprocess, --load_size, --crop_size and --no_flip (its defaults)."""
    mode: str = 'resize_and_crop'
    load_size: int = 286
    crop_size: int = 256
    no_flip: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f'preprocess mode {self.mode!r} is not one of {MODES}')
        if self.load_size < 1 or self.crop_size < 1:
            raise ValueError(f'load_size {self.load_size} and crop_size {self.crop_size} must be positive')
        if self.mode in ('resize_and_crop', 'scale_width_and_crop') and self.load_size < self.crop_size:
            raise ValueError(f'crop_size {self.crop_size} exceeds load_size {self.load_size}: the crop '
                             'is taken from the image resized to load_size (the original asserts this too)')


CITYSCAPES = Preprocess('scale_width', load_size=512, crop_size=512)  # the original's cityscapes defaults


@dataclasses.dataclass(frozen=True)
class Params:
    """One example's random transform: crop box top-left and size (pixels), and the flip."""
    crop_pos: tuple = (0, 0)
    crop_size: tuple = (0, 0)
    flip: bool = False


def _scaled_width_size(w, h, target):
    return (w, h) if w == target else (target, int(target * h / w))


def transformed_size(opt: Preprocess, size) -> tuple:
    """(w, h) of an image of `size` after the resize / scale-width step (before cropping)."""
    w, h = size
    if 'resize' in opt.mode:
        return opt.load_size, opt.load_size
    if 'scale_width' in opt.mode:
        return _scaled_width_size(w, h, opt.load_size)
    return w, h


def draw_params(opt: Preprocess, size, u, shared: bool = True) -> Params:
    """The crop and flip of one example from three uniforms `u` in [0, 1) (x, y, flip).

    shared=True is the original's `get_params(opt, size)` (paired data): crop (crop_size,
    crop_size), except scale_width_and_crop's (crop_size, crop_size * h // w), at offsets
    uniform in [0, max(0, new - crop)]. In mode 'crop' the original passes a (0, 0) crop size
    and so returns an empty image; this takes the crop_size x crop_size crop that the option
    names (upstream pix2pix's behaviour). shared=False is torchvision's RandomCrop(crop_size)
    on the transformed image (unpaired data): square, and an error where the image is smaller.
    The flip is the original's `random() > 0.5`, never under no_flip.
    """
    ux, uy, uf = (float(v) for v in u)
    flip = (not opt.no_flip) and uf > 0.5
    if 'crop' not in opt.mode:
        return Params(flip=flip)
    w, h = size
    if shared:
        if opt.mode == 'resize_and_crop':
            (new_w, new_h), (tw, th) = (opt.load_size, opt.load_size), (opt.crop_size, opt.crop_size)
        elif opt.mode == 'scale_width_and_crop':
            new_w, new_h = opt.load_size, opt.load_size * h // w
            tw, th = opt.crop_size, opt.crop_size * h // w
        else:  # 'crop'
            (new_w, new_h), (tw, th) = (w, h), (opt.crop_size, opt.crop_size)
    else:
        (new_w, new_h), tw = transformed_size(opt, size), opt.crop_size
        th = tw
        if new_w < tw or new_h < th:
            raise ValueError(f'an image of {w}x{h} becomes {new_w}x{new_h} under preprocess '
                             f'{opt.mode!r}, smaller than crop_size {tw} (torchvision RandomCrop '
                             'refuses it too); use a smaller crop_size or a larger load_size')
    x = int(ux * (max(0, new_w - tw) + 1))
    y = int(uy * (max(0, new_h - th) + 1))
    return Params((x, y), (tw, th), flip)


def _make_power_2(img, base, method):
    w, h = img.size
    # Python's round (half to even), as the original
    new = (int(round(w / base) * base), int(round(h / base) * base))
    return img if new == (w, h) else img.resize(new, method)


def transform(img: Image.Image, opt: Preprocess, params: Params, method=Image.BICUBIC) -> Image.Image:
    """The original's `get_transform(opt, params, method)` up to (excluding) ToTensor."""
    if 'resize' in opt.mode:
        img = img.resize((opt.load_size, opt.load_size), method)
    elif 'scale_width' in opt.mode:
        size = _scaled_width_size(*img.size, opt.load_size)
        img = img if size == img.size else img.resize(size, method)
    if 'crop' in opt.mode:
        (x, y), (tw, th) = params.crop_pos, params.crop_size
        if img.width > tw or img.height > th:  # as the original's __crop: else unchanged
            img = img.crop((x, y, x + tw, y + th))
    if opt.mode == 'none':
        img = _make_power_2(img, 4, method)
    if params.flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def photo_to_float(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 -> float32 (x / 255 - 0.5) / 0.5, bit for bit ToTensor + Normalize(0.5, 0.5) (which
    `pipeline.to_float`'s x / 127.5 - 1 misses by one ulp on about half of the values)."""
    x = images_uint8.astype(np.float32) / np.float32(255)
    return (x - np.float32(0.5)) / np.float32(0.5)


def _stack(arrays, what):
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) > 1:
        raise ValueError(f'the {what} images of one batch have different sizes after preprocessing '
                         f'({shapes[:4]}): use a preprocess mode that crops to a fixed size '
                         "('resize_and_crop', 'crop'), or a batch of 1")
    return np.stack(arrays)


# ---------------------------------------------------------------------------- sources


def _as_list(values, key):
    if (isinstance(values, np.ndarray) and values.ndim >= 3) or isinstance(values, (list, tuple)):
        return list(values)
    raise TypeError(f"feature '{key}': expected a uint8 array [n, h, w(, c)] or a list of arrays, "
                    f'got {type(values).__name__}')


class Img2ImgArraySource:
    """Examples in memory: each keyword a uint8 array [n, h, w(, c)] or a list of n arrays."""

    def __init__(self, **features):
        if not features:
            raise ValueError('Img2ImgArraySource needs at least one feature')
        self.features = {k: _as_list(v, k) for k, v in features.items()}
        lengths = {k: len(v) for k, v in self.features.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f'features differ in length: {lengths}')
        self.n = next(iter(lengths.values()))

    @property
    def keys(self):
        return tuple(self.features)

    def __len__(self):
        return self.n

    def get(self, indices, pool=None):
        del pool
        return {k: [v[int(i)] for i in indices] for k, v in self.features.items()}


class Img2ImgDataSource:
    """Examples read by index from a prepared builder's `as_data_source(split)`.

    `keys` maps output keys to feature names (default: every feature but 'name'). A one-channel
    image feature [h, w, 1] (label maps) comes out as [h, w].
    """

    def __init__(self, data_source, keys: Optional[Mapping[str, str]] = None, features=None):
        self.ds = data_source
        if keys is None:
            names = list(features) if features is not None else list(data_source[0])
            keys = {k: k for k in names if k != 'name'}
        self.key_map = dict(keys)

    @property
    def keys(self):
        return tuple(self.key_map)

    def __len__(self):
        return len(self.ds)

    def _one(self, i):
        ex = self.ds[int(i)]
        out = {}
        for key, feature in self.key_map.items():
            v = np.asarray(ex[feature])
            out[key] = v[..., 0] if v.ndim == 3 and v.shape[-1] == 1 else v
        return out

    def get(self, indices, pool=None):
        exs = list(pool.map(self._one, indices) if pool is not None else map(self._one, indices))
        return {k: [e[k] for e in exs] for k in self.key_map}

    def names(self, indices) -> list:
        """The examples' 'name' feature (their file name in the prepared folder)."""
        out = []
        for i in indices:
            name = self.ds[int(i)]['name']
            out.append(name.decode() if isinstance(name, bytes) else str(name))
        return out


class UnpairedSource:
    """Two domains for an unpaired stream: sources `a` and `b`, each with an 'image' key.

    Its length, max(len a, len b), is the original's unaligned dataset's epoch."""

    def __init__(self, a, b):
        for side, s in (('A', a), ('B', b)):
            if 'image' not in s.keys:
                raise ValueError(f"domain {side} source has keys {s.keys}, expected an 'image' key")
            if not len(s):
                raise ValueError(f'domain {side} source is empty')
        self.a, self.b = a, b

    def __len__(self):
        return max(len(self.a), len(self.b))


def procedural_source(task: str, n: int, resolution: int, seed: int = 0, split: str = 'train',
                      labels: bool = False):
    """`n` examples of an embedded procedural task (`procedural_img2img`) as a source.

    Paired tasks: keys 'A' (input) and 'B' (target), or with labels=True 'label' (class ids
    [h, w]) and 'image' (the target) for `CityscapesStream` (no instances). 'recolor': an
    `UnpairedSource` in training (no pair ever seen), a paired A/B source at test.
    """
    exs = [procedural_img2img.example(task, i, resolution, seed, split) for i in range(n)]
    if task == 'recolor':
        a, b = np.stack([e['A'] for e in exs]), np.stack([e['B'] for e in exs])
        if split == 'train':
            return UnpairedSource(Img2ImgArraySource(image=a), Img2ImgArraySource(image=b))
        return Img2ImgArraySource(A=a, B=b)
    if labels:
        return Img2ImgArraySource(label=np.stack([e['labels'] for e in exs]),
                                  image=np.stack([e['target'] for e in exs]))
    return Img2ImgArraySource(A=np.stack([e['input'] for e in exs]), B=np.stack([e['target'] for e in exs]))


# ---------------------------------------------------------------------------- loading

# TFDS catalog datasets read as their users prepared them (never prepared or downloaded here)
CATALOG = ('cycle_gan',)
BUILDERS = {'paired_images': img2img_builders.PairedImages,
            'unpaired_images': img2img_builders.UnpairedImages,
            'cityscapes_fine': img2img_builders.Cityscapes}


def img2img_builder(dataset, data_dir=None) -> tfds.core.DatasetBuilder:
    """Our builder for 'paired_images[/config]', 'unpaired_images[/config]' or 'cityscapes_fine'
    (a config name outside the predefined ones is a custom config), prepared as array_record."""
    if isinstance(dataset, tfds.core.DatasetBuilder):
        if not isinstance(dataset, tuple(BUILDERS.values())):
            raise ValueError(f'{type(dataset).__name__} is not one of the image-to-image builders '
                             f'{[c.__name__ for c in BUILDERS.values()]}')
        return dataset
    name, _, config = str(dataset).partition('/')
    if name not in BUILDERS:
        raise ValueError(f"unknown image-to-image dataset {dataset!r}: expected one of {sorted(BUILDERS)}, "
                         "e.g. 'paired_images/edges2shoes-r', 'unpaired_images/horse2zebra', 'cityscapes_fine'")
    cls = BUILDERS[name]
    kwargs = {'data_dir': None if data_dir is None else os.path.expanduser(os.fspath(data_dir)),
              'file_format': 'array_record'}
    if not config:
        return cls(**kwargs)
    if not cls.BUILDER_CONFIGS:
        raise ValueError(f"dataset '{name}' has no configs; use it as '{name}', not {dataset!r}")
    known = {c.name for c in cls.BUILDER_CONFIGS}
    return cls(config=config if config in known else tfds.core.BuilderConfig(name=config), **kwargs)


def load_img2img_source(dataset, split: str = 'train', data_dir=None, manual_dir=None):
    """A random-access source of one of our image-to-image datasets; prepares it from
    `manual_dir` (into `data_dir`) when it is not prepared yet. Nothing is downloaded.

    Returns, by builder: PairedImages -> keys 'A', 'B'; Cityscapes -> 'label', 'instance',
    'image'; UnpairedImages -> split 'trainA' (etc.) a single-domain 'image' source, split
    'train' / 'val' / 'test' an `UnpairedSource` of its A and B splits. With several hosts
    sharing one data_dir, prepare once before launching, since concurrent preparations race.
    """
    if str(dataset).partition('/')[0] in CATALOG:
        return _catalog_source(str(dataset), split, data_dir)
    builder = img2img_builder(dataset, data_dir)
    full = builder.info.full_name
    if not builder.is_prepared():
        if manual_dir is None:
            raise FileNotFoundError(
                f'{full} is not prepared in {builder.data_dir_root} and no manual_dir was given to '
                'prepare it from (it is never downloaded). Pass manual_dir=<folder>, laid out as:\n'
                f'{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}or pass the data_dir where it was prepared.')
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=os.path.expanduser(os.fspath(manual_dir)), try_download_gcs=False))
    splits = list(builder.info.splits)
    unpaired = isinstance(builder, img2img_builders.UnpairedImages)
    if unpaired and split not in splits and f'{split}A' in splits and f'{split}B' in splits:
        return UnpairedSource(_open(builder, f'{split}A'), _open(builder, f'{split}B'))
    if split not in splits:
        pairs = ' (or, for an unpaired stream, a prefix with both its A and B splits)' if unpaired else ''
        raise ValueError(f'{full} has no split {split!r}{pairs}; it has {splits}')
    return _open(builder, split)


def _catalog_source(dataset: str, split: str, data_dir=None):
    """TFDS's own ``cycle_gan/<name>`` (splits trainA, trainB, testA, testB), read by index as the user
    prepared it: split 'train' / 'test' gives an `UnpairedSource` of its two domains."""
    if '/' not in dataset:
        raise ValueError(f"dataset {dataset!r}: name the pair, e.g. 'cycle_gan/horse2zebra'")
    root = None if data_dir is None else os.path.expanduser(os.fspath(data_dir))
    builder = tfds.builder(dataset, data_dir=root)

    def domain(name):
        try:
            ds = builder.as_data_source(name)
        except Exception as e:  # not prepared, or prepared as TFRecord only
            raise FileNotFoundError(
                f'TFDS dataset {dataset!r}, split {name!r}, cannot be read by index from {builder.data_dir_root} '
                f'({type(e).__name__}: {e}). This pipeline never downloads: prepare it once where the network '
                f'is reachable, `tfds build {dataset} --data_dir={builder.data_dir_root} --file_format=array_record`, '
                "and copy the data dir here (--config.data_dir); or unpack the original's trainA / trainB / testA / "
                "testB folders and use 'unpaired_images/<name>' with --config.manual_dir.") from e
        return Img2ImgDataSource(ds, keys={'image': 'image'})
    if split.endswith(('A', 'B')):
        return domain(split)
    return UnpairedSource(domain(f'{split}A'), domain(f'{split}B'))


def _open(builder, split):
    try:
        ds = builder.as_data_source(split)
    except Exception as e:  # prepared as TFRecord: no random access
        raise ValueError(f'{builder.info.full_name} in {builder.data_dir} has no random access ({e}). '
                         "Re-prepare it with file_format='array_record' (load_img2img_source does).") from e
    return Img2ImgDataSource(ds, features=builder.info.features)


# ---------------------------------------------------------------------------- streams


class _Img2ImgStream(InputIterator):
    """`pipeline.InputIterator`'s order, host slices and prefetch thread; `batch` differs.

    `batch_at(step)` computes this host's share of any global batch directly (a pure function);
    `next()` returns batches `start_step`, `start_step + 1`, ... Use as a context manager (or
    call `close()`) to stop the prefetch thread.
    """
    DEFAULT_PREPROCESS = Preprocess()
    REQUIRED_KEYS: Sequence[str] = ()

    def __init__(self, source, *, global_batch: int, seed: int, preprocess: Optional[Preprocess] = None,
                 start_step: int = 0, process_index: Optional[int] = None, process_count: Optional[int] = None,
                 prefetch: int = 2, num_workers: Optional[int] = None, name: str = 'dataset'):
        process_index, process_count = host_share(global_batch, process_index, process_count)
        if start_step < 0:
            raise ValueError(f'start_step must be >= 0, got {start_step}')
        self._check_keys(source)
        self.preprocess = self.DEFAULT_PREPROCESS if preprocess is None else preprocess
        # set before InputIterator.__init__, whose prefetch thread starts calling `batch` at once
        super().__init__(source, resolution=None, n_res=None, global_batch=global_batch, seed=seed,
                         start_step=start_step, process_index=process_index, process_count=process_count,
                         flip=not self.preprocess.no_flip, prefetch=prefetch, num_workers=num_workers,
                         name=name)

    def _check_keys(self, source):
        missing = [k for k in self.REQUIRED_KEYS if k not in source.keys]
        if missing:
            raise ValueError(f'{type(self).__name__} needs source keys {list(self.REQUIRED_KEYS)}; the '
                             f'source has {list(source.keys)} (missing {missing})')

    def order(self, step: int):
        """(stream positions, example indices) of this host's share of global batch `step`."""
        return self.positions(step), self.indices(step)[0]  # InputIterator's flip bits unused

    def draws(self, positions, side: int) -> np.ndarray:
        """float64 [n, 3] uniforms (crop x, crop y, flip) of these positions for one image group."""
        slots = np.arange(3)
        return hashing.uniform(self.seed, _DRAW_STREAM, side, positions[:, None], slots[None, :])

    def batch(self, step: int):  # what InputIterator's prefetch thread calls
        return self.batch_at(step)

    def batch_at(self, step: int) -> dict:
        raise NotImplementedError


class PairedStream(_Img2ImgStream):
    """pix2pix batches {'A': input, 'B': target}, float32 NHWC in [-1, 1], from a source with keys
    'A' and 'B'; A and B of an example share one crop and flip (drawn from A's size)."""
    REQUIRED_KEYS = ('A', 'B')

    def __init__(self, source, *, direction: str = 'AtoB', **kwargs):
        if direction not in DIRECTIONS:
            raise ValueError(f'direction {direction!r} is not one of {DIRECTIONS}')
        self.direction = direction
        super().__init__(source, **kwargs)

    def _one(self, a, b, u):
        a, b = Image.fromarray(a), Image.fromarray(b)
        params = draw_params(self.preprocess, a.size, u, shared=True)
        return (np.asarray(transform(a, self.preprocess, params)),
                np.asarray(transform(b, self.preprocess, params)))

    def names_at(self, step: int) -> list:
        """The file names of this host's examples of batch ``step`` (a prepared builder's source)."""
        if not hasattr(self.source, 'names'):
            raise ValueError(f'{type(self.source).__name__} holds no example names; names come from a prepared '
                             'paired_images builder')
        return self.source.names(self.order(step)[1])

    def batch_at(self, step: int) -> dict:
        pos, idx = self.order(step)
        ex = self.source.get(idx, self._pool)
        out = list(self._pool.map(self._one, ex['A'], ex['B'], self.draws(pos, _SIDE_PAIRED)))
        a, b = _stack([o[0] for o in out], 'A'), _stack([o[1] for o in out], 'B')
        if self.direction == 'BtoA':
            a, b = b, a
        return {'A': photo_to_float(a), 'B': photo_to_float(b)}


class UnpairedStream(_Img2ImgStream):
    """CycleGAN batches {'A', 'B'}, float32 NHWC in [-1, 1], from an `UnpairedSource`: A by the
    epoch permutation, B uniformly at random per position, each transformed on its own."""

    def __init__(self, source, *, direction: str = 'AtoB', **kwargs):
        if not isinstance(source, UnpairedSource):
            raise TypeError(f'UnpairedStream needs an UnpairedSource(a, b), got {type(source).__name__}')
        if direction not in DIRECTIONS:
            raise ValueError(f'direction {direction!r} is not one of {DIRECTIONS}')
        self.direction = direction
        super().__init__(source, **kwargs)

    def _check_keys(self, source):
        pass  # UnpairedSource checks both domains

    def b_indices(self, positions) -> np.ndarray:
        """The B example of each position: uniform over B, independent of A's order."""
        u = hashing.uniform(self.seed, _B_STREAM, positions)
        return np.minimum((u * len(self.source.b)).astype(np.int64), len(self.source.b) - 1)

    def _one(self, image, u):
        image = Image.fromarray(image)
        return np.asarray(transform(image, self.preprocess, draw_params(self.preprocess, image.size, u, shared=False)))

    def batch_at(self, step: int) -> dict:
        pos, idx = self.order(step)
        a = self.source.a.get(idx % len(self.source.a), self._pool)['image']
        b = self.source.b.get(self.b_indices(pos), self._pool)['image']
        a = _stack(list(self._pool.map(self._one, a, self.draws(pos, _SIDE_A))), 'A')
        b = _stack(list(self._pool.map(self._one, b, self.draws(pos, _SIDE_B))), 'B')
        if self.direction == 'BtoA':
            a, b = b, a
        return {'A': photo_to_float(a), 'B': photo_to_float(b)}


class CityscapesStream(_Img2ImgStream):
    """GauGAN batches: 'label' int32 [N, H, W] (255 -> `unknown_label`, as the original),
    'instance' int32 [N, H, W] ids (when the source has them), 'image' float32 NHWC in [-1, 1].
    One crop and flip per example, drawn from the label map's size; maps resized with NEAREST.
    Defaults to the original's Cityscapes preprocessing, `CITYSCAPES` (scale_width to 512)."""
    DEFAULT_PREPROCESS = CITYSCAPES
    REQUIRED_KEYS = ('label', 'image')

    def __init__(self, source, *, unknown_label: int = CITYSCAPES_UNKNOWN_LABEL, **kwargs):
        self.unknown_label = unknown_label
        super().__init__(source, **kwargs)

    def _one(self, label, image, instance, u):
        label = Image.fromarray(np.asarray(label, np.uint8))
        params = draw_params(self.preprocess, label.size, u, shared=True)
        out = {'label': np.asarray(transform(label, self.preprocess, params, Image.NEAREST)),
               'image': np.asarray(transform(Image.fromarray(image), self.preprocess, params))}
        if instance is not None:  # ids above 255: a 32-bit integer ('I') image keeps them exact
            inst = Image.fromarray(np.asarray(instance, np.int32))
            out['instance'] = np.asarray(transform(inst, self.preprocess, params, Image.NEAREST))
        return out

    def train_ids_at(self, step: int) -> np.ndarray:
        """The mIoU ground truth of this host's examples of batch ``step``: their label ids at the native
        size (no crop, no resize: 1024 x 2048 for Cityscapes) mapped to train ids (0..18, 255 ignored)."""
        labels = [img2img_builders.cityscapes_train_ids(x) for x in self.source.get(self.order(step)[1])['label']]
        if len({x.shape for x in labels}) > 1:
            raise ValueError(f'the label maps of batch {step} differ in size ({sorted({x.shape for x in labels})}); '
                             'mIoU compares a batch at one size: evaluate with a batch of 1')
        return np.stack(labels)

    def batch_at(self, step: int) -> dict:
        pos, idx = self.order(step)
        ex = self.source.get(idx, self._pool)
        instances = ex.get('instance', [None] * len(idx))
        out = list(self._pool.map(self._one, ex['label'], ex['image'], instances, self.draws(pos, _SIDE_PAIRED)))
        label = _stack([o['label'] for o in out], 'label').astype(np.int32)
        label[label == 255] = self.unknown_label
        batch = {'label': label, 'image': photo_to_float(_stack([o['image'] for o in out], 'image'))}
        if 'instance' in ex:
            batch['instance'] = _stack([o['instance'] for o in out], 'instance').astype(np.int32)
        return batch


def create_img2img_iter(dataset, *, global_batch: int, seed: int, split: str = 'train', start_step: int = 0,
                        preprocess: Optional[Preprocess] = None, direction: str = 'AtoB', data_dir=None,
                        manual_dir=None, process_index=None, process_count=None, **kwargs):
    """`load_img2img_source` + the stream its kind needs: `PairedStream` for paired_images,
    `UnpairedStream` for an unpaired split pair, `CityscapesStream` for cityscapes_fine."""
    source = load_img2img_source(dataset, split, data_dir=data_dir, manual_dir=manual_dir)
    common = dict(global_batch=global_batch, seed=seed, preprocess=preprocess, start_step=start_step,
                  process_index=process_index, process_count=process_count,
                  name=f"dataset '{dataset}' (split '{split}')", **kwargs)
    if isinstance(source, UnpairedSource):
        return UnpairedStream(source, direction=direction, **common)
    if 'label' in source.keys:
        return CityscapesStream(source, **common)
    if 'A' in source.keys:
        return PairedStream(source, direction=direction, **common)
    raise ValueError(f"split {split!r} of {dataset!r} is a single domain (keys {source.keys}); an unpaired "
                     f"stream needs both domains: pass split='{split.rstrip('AB')}'")
