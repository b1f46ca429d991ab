"""TFDS builders for the image-to-image family: paired (pix2pix), unpaired (CycleGAN) and
Cityscapes label maps (GauGAN), each read from a local folder; nothing is ever downloaded.

    from anycost_jax.data import img2img_builders as ib
    b = ib.PairedImages(config='edges2shoes-r', data_dir='~/tensorflow_datasets', file_format='array_record')
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir='~/edges2shoes-r'))

Images are stored decoded, as PNG at their native size: the original (mit-han-lab/gan-compression)
resizes and crops at load time with parameters drawn per example, so preparation must not fix a
size. JPEG sources therefore grow on disk (lossless PNG), in exchange for bit-exact pixels.

`PairedImages` and `UnpairedImages` have one config per dataset name only so that several
datasets can be prepared side by side in one data_dir; the configs do not change what is stored.
Any other name works as a custom config: `PairedImages(config=tfds.core.BuilderConfig(name='x'))`.

Undecodable files are skipped, counted in the log (the first few named) and kept in the
builder's `skipped_files` ({split: [keys]}); a split where nothing decodes is an error.
Prepare with `file_format='array_record'` (`img2img_pipeline.load_img2img_source` does): the
training streams need random access.
"""
import concurrent.futures
import io
import itertools
import logging
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from anycost_jax.data.builders import _CodePathHere, _png, _read_all, list_image_files

log = logging.getLogger(__name__)

PAIRED_SPLITS = ('train', 'val', 'test')
UNPAIRED_SPLITS = ('trainA', 'trainB', 'valA', 'valB', 'testA', 'testB')
CITYSCAPES_SPLITS = ('train', 'val')
# the original's paired / unpaired datasets (scripts/pix2pix, scripts/cycle_gan, scripts/munit)
PAIRED_CONFIGS = ('default', 'edges2shoes-r', 'maps', 'cityscapes', 'facades')
UNPAIRED_CONFIGS = ('default', 'horse2zebra', 'summer2winter_yosemite', 'edges2shoes-r-unaligned')
_CHUNK = 64  # examples decoded in parallel per round (native-size images can be large)
_NAMED = 5   # how many skipped / unmatched files a log line or error names


def _rgb(data: bytes) -> np.ndarray:
    """Encoded image bytes -> uint8 [h, w, 3], converted to RGB as the original's loaders do."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert('RGB'), dtype=np.uint8)


class _Broken(str):
    """Why a file could not be used (the exception), in place of its decoded value."""


def _try(fn, *args):
    """fn(*args), or a `_Broken` reason when the file is broken: PIL raises many exception types
    for those, and the reason goes to the log so that a bug shows as more than a count."""
    try:
        return fn(*args)
    except Exception as e:  # OSError, SyntaxError, ValueError, struct.error, ... from a broken file
        return _Broken(f'{type(e).__name__}: {e}')


def _parallel(fn, jobs, workers):
    """Yields fn(job) for each job of an iterable, in order, a chunk at a time in a thread pool:
    only one chunk of file contents is held in memory, however large the split."""
    jobs = iter(jobs)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        while chunk := list(itertools.islice(jobs, _CHUNK)):
            yield from pool.map(fn, chunk)


def _manual_path(dl_manager, dataset: str, layout: str) -> str:
    """The manual dir, checked here so that a missing or empty one reports the expected layout."""
    path = getattr(dl_manager, '_manual_dir', None)
    if path is None:
        raise FileNotFoundError(
            f'{dataset} is built from a local folder and nothing is downloaded, but no manual_dir '
            f'was given.\n{layout}Pass it as manual_dir= (load_img2img_source) or '
            'download_config=tfds.download.DownloadConfig(manual_dir=...) (tfds).')
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isdir(path) or not os.listdir(path):
        raise FileNotFoundError(f'{dataset} manual directory {path} does not exist or is empty.\n{layout}')
    return path


def _report_skipped(dataset, split, bad, reasons, n_kept, n_total, where):
    """Logs the undecodable files of one split (the first few with why); refuses a split where
    no example could be read."""
    named = '; '.join(f'{k} ({r})' for k, r in zip(bad[:_NAMED], reasons))
    if not n_kept:
        raise ValueError(f'{dataset}: none of the {n_total} examples of split {split!r} under {where} '
                         f'could be decoded, e.g. {named}')
    if bad:
        log.warning('%s: split %s: skipped %d undecodable file(s), kept %d of %d examples under %s, e.g. %s',
                    dataset, split, len(bad), n_kept, n_total, where, named)


def _one_file_examples(builder, dataset, split, items, where, decode, example):
    """Examples of one file each: ``decode(bytes)`` in parallel, the broken ones skipped, recorded in
    ``builder.skipped_files[split]`` and reported; ``example(key, decoded)`` -> the features."""
    bad, reasons, kept = builder.skipped_files.setdefault(split, []), [], 0
    decoded = _parallel(lambda data: _try(decode, data), _read_all(items), builder.num_workers)
    for (key, _), value in zip(items, decoded):
        if isinstance(value, _Broken):
            bad.append(key)
            reasons.append(value)
            continue
        kept += 1
        yield key, example(key, value)
    _report_skipped(dataset, split, bad, reasons, kept, len(items), where)


# ---------------------------------------------------------------------------- paired

_PAIRED_LAYOUT = """\
Paired images (pix2pix) in the manual directory, per split (train, val, test: whichever exist),
in either layout:
  - <manual_dir>/<split>/*.jpg|png, each image A | B side by side (A the left half, B the right,
    split at width // 2), as the original's aligned datasets (edges2shoes-r, maps, cityscapes);
  - <manual_dir>/<split>/A/ and <manual_dir>/<split>/B/, paired by file name without extension
    (A/0001.jpg with B/0001.png; subfolders allowed).
Folders are searched recursively, and .zip archives in them are read as well.
"""


def _split_ab(data: bytes):
    """One side-by-side image -> (A, B) PNGs: A = columns [0, w // 2), B = [w // 2, w)."""
    ab = _rgb(data)
    w2 = ab.shape[1] // 2
    return _png(ab[:, :w2]), _png(ab[:, w2:])


def _png_of_rgb(data: bytes) -> bytes:
    return _png(_rgb(data))


def _by_stem(items, folder):
    """{relative path without extension: item}; two files with one stem are ambiguous."""
    out = {}
    for key, src in items:
        stem = os.path.splitext(key)[0]
        if stem in out:
            raise ValueError(f'{folder} holds two images named {stem!r} ({out[stem][0]} and {key}); '
                             'pairing by name needs one file per name')
        out[stem] = (key, src)
    return out


def match_pairs(items_a, items_b, where: str):
    """([(stem, item_a, item_b)] sorted by stem, unmatched keys), pairing A and B files by stem.

    Unmatched files are returned for the caller to count and log; no match at all is an error.
    """
    a, b = _by_stem(items_a, f'{where}/A'), _by_stem(items_b, f'{where}/B')
    common = sorted(a.keys() & b.keys())
    unmatched = sorted([f'A/{a[s][0]}' for s in a.keys() - b.keys()] +
                       [f'B/{b[s][0]}' for s in b.keys() - a.keys()])
    if not common:
        raise ValueError(
            f'{where}: none of the {len(a)} image(s) in A/ and {len(b)} in B/ share a file name '
            f'(without extension), so nothing can be paired; unmatched: {unmatched[:_NAMED]}. '
            'Name each B image as its A image (e.g. A/0001.jpg and B/0001.png).')
    return [(s, a[s], b[s]) for s in common], unmatched


class PairedImages(_CodePathHere, tfds.core.GeneratorBasedBuilder):
    """Paired images for pix2pix: A (input domain) and B (target domain) of one scene."""

    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'A and B as RGB PNGs at native size, from side-by-side images or '
                              'A/ and B/ folders matched by name.'}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _PAIRED_LAYOUT
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n, description=f'paired images: {n}') for n in PAIRED_CONFIGS]
    num_workers = min(16, os.cpu_count() or 1)

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                'A': tfds.features.Image(shape=(None, None, 3), encoding_format='png'),
                'B': tfds.features.Image(shape=(None, None, 3), encoding_format='png'),
                'name': tfds.features.Text(),
            }),
            supervised_keys=('A', 'B'),
            homepage='https://github.com/mit-han-lab/gan-compression',
            citation='Isola, Zhu, Zhou, Efros. Image-to-Image Translation with Conditional '
                     'Adversarial Networks. CVPR 2017.',
        )

    def _split_generators(self, dl_manager):
        root = _manual_path(dl_manager, 'PairedImages', _PAIRED_LAYOUT)
        self.skipped_files, self.unmatched_files = {}, {}
        splits = {}
        for split in PAIRED_SPLITS:
            where = os.path.join(root, split)
            if not os.path.isdir(where):
                continue
            if os.path.isdir(os.path.join(where, 'A')) and os.path.isdir(os.path.join(where, 'B')):
                pairs, unmatched = match_pairs(list_image_files(os.path.join(where, 'A')),
                                               list_image_files(os.path.join(where, 'B')), where)
                if unmatched:
                    log.warning('PairedImages: split %s: %d file(s) without a partner of the same name '
                                'skipped (%d pairs kept), e.g. %s', split, len(unmatched), len(pairs),
                                ', '.join(unmatched[:_NAMED]))
                self.unmatched_files[split] = unmatched
                splits[split] = self._generate_folders(split, pairs, where)
            else:
                items = list_image_files(where)
                if not items:
                    raise FileNotFoundError(f'PairedImages: no images in {where}.\n{_PAIRED_LAYOUT}')
                splits[split] = self._generate_examples(split, items, where)
        if not splits:
            raise FileNotFoundError(f'PairedImages: none of {PAIRED_SPLITS} is a folder under {root}.\n'
                                    f'{_PAIRED_LAYOUT}')
        return splits

    def _generate_examples(self, split, items, where):
        """Side-by-side images, split into their A and B halves."""
        return _one_file_examples(self, 'PairedImages', split, items, where, _split_ab,
                                  lambda key, ab: {'A': ab[0], 'B': ab[1], 'name': key})

    def _generate_folders(self, split, pairs, where):
        bad, reasons, kept = self.skipped_files.setdefault(split, []), [], 0
        # each side read in file order (one zip handle open per side), decoded in parallel
        jobs = zip(_read_all([p[1] for p in pairs]), _read_all([p[2] for p in pairs]))
        decoded = _parallel(lambda ab: (_try(_png_of_rgb, ab[0]), _try(_png_of_rgb, ab[1])), jobs,
                            self.num_workers)
        for (stem, (key_a, _), (key_b, _)), pngs in zip(pairs, decoded):
            broken = [(f'{side}/{key}', png) for side, key, png in zip('AB', (key_a, key_b), pngs)
                      if isinstance(png, _Broken)]
            if broken:  # a pair with one broken side is dropped whole
                bad.extend(k for k, _ in broken)
                reasons.extend(r for _, r in broken)
                continue
            kept += 1
            yield stem, {'A': pngs[0], 'B': pngs[1], 'name': stem}
        _report_skipped('PairedImages', split, bad, reasons, kept, len(pairs), where)


# ---------------------------------------------------------------------------- unpaired

_UNPAIRED_LAYOUT = """\
Unpaired images (CycleGAN) in the manual directory: one folder per domain and split,
<manual_dir>/trainA, trainB, testA, testB (valA, valB too if present), each of .jpg / .png files
(searched recursively; .zip archives in them are read as well), as the original's cycle_gan
datasets (horse2zebra, summer2winter_yosemite, ...) are laid out.
"""


class UnpairedImages(_CodePathHere, tfds.core.GeneratorBasedBuilder):
    """Unpaired images for CycleGAN: each split one domain (trainA, trainB, testA, testB)."""

    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'RGB PNGs at native size, one split per domain folder.'}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _UNPAIRED_LAYOUT
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n, description=f'unpaired images: {n}')
                       for n in UNPAIRED_CONFIGS]
    num_workers = min(16, os.cpu_count() or 1)

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                'image': tfds.features.Image(shape=(None, None, 3), encoding_format='png'),
                'name': tfds.features.Text(),
            }),
            supervised_keys=None,
            homepage='https://github.com/mit-han-lab/gan-compression',
            citation='Zhu, Park, Isola, Efros. Unpaired Image-to-Image Translation using '
                     'Cycle-Consistent Adversarial Networks. ICCV 2017.',
        )

    def _split_generators(self, dl_manager):
        root = _manual_path(dl_manager, 'UnpairedImages', _UNPAIRED_LAYOUT)
        self.skipped_files, splits = {}, {}
        for split in UNPAIRED_SPLITS:
            where = os.path.join(root, split)
            if os.path.isdir(where):
                items = list_image_files(where)
                if not items:
                    raise FileNotFoundError(f'UnpairedImages: no images in {where}.\n{_UNPAIRED_LAYOUT}')
                splits[split] = self._generate_examples(split, items, where)
        if not splits:
            raise FileNotFoundError(f'UnpairedImages: none of {UNPAIRED_SPLITS} is a folder under {root}.\n'
                                    f'{_UNPAIRED_LAYOUT}')
        return splits

    def _generate_examples(self, split, items, where):
        return _one_file_examples(self, 'UnpairedImages', split, items, where, _png_of_rgb,
                                  lambda key, png: {'image': png, 'name': key})


# ---------------------------------------------------------------------------- cityscapes

_CITYSCAPES_LAYOUT = """\
Cityscapes (https://www.cityscapes-dataset.com: gtFine_trainvaltest.zip and
leftImg8bit_trainvaltest.zip, unzipped) in the manual directory:
  <manual_dir>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
  <manual_dir>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png
  <manual_dir>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
for split train and / or val. The three files of a frame are matched by <city>_<seq>_<frame>,
as the original's cityscapes dataset does; frames missing one of them are skipped and counted.
"""
_CITYSCAPES_FILES = {'label': ('gtFine', '_gtFine_labelIds.png'),
                     'instance': ('gtFine', '_gtFine_instanceIds.png'),
                     'image': ('leftImg8bit', '_leftImg8bit.png')}


# Cityscapes' label id -> train id (cityscapesScripts' labels.py: the 19 evaluated classes, 255 ignored),
# what the mIoU protocol compares a segmentation of the generated images against
CITYSCAPES_TRAIN_IDS = np.full(256, 255, np.uint8)
for _label_id, _train_id in {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                             25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}.items():
    CITYSCAPES_TRAIN_IDS[_label_id] = _train_id
CITYSCAPES_EVAL_CLASSES = 19


def cityscapes_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes label ids (``*_gtFine_labelIds.png``, what GauGAN takes) -> train ids (0..18, 255
    ignored), as ``*_gtFine_trainIds.png``: the mIoU ground truth."""
    label_ids = np.asarray(label_ids)
    if label_ids.dtype != np.uint8 and (label_ids.min() < 0 or label_ids.max() > 255):
        raise ValueError(f'Cityscapes label ids lie in [0, 33]; got values in [{label_ids.min()}, {label_ids.max()}]')
    return CITYSCAPES_TRAIN_IDS[label_ids.astype(np.int64)]


def read_train_ids(path: str) -> np.ndarray:
    """The gtFine train ids [H, W] uint8 of one frame, from ``path``: a ``*_gtFine_trainIds.png`` (what
    gan-compression's ``datasets/get_trainIds.py`` writes and its mIoU table names) or a
    ``*_gtFine_labelIds.png`` (what the Cityscapes release ships), mapped by :func:`cityscapes_train_ids`,
    the same table. A ``_trainIds.png`` path that does not exist is read from the ``_labelIds.png``
    beside it, so get_trainIds.py need not have run."""
    path = os.path.expanduser(os.fspath(path))
    if path.endswith('_trainIds.png') and not os.path.isfile(path):
        label_ids = path[:-len('_trainIds.png')] + '_labelIds.png'
        if not os.path.isfile(label_ids):
            raise FileNotFoundError(f'Cityscapes ground truth: neither {path} nor {label_ids} exists; unzip '
                                    'gtFine_trainvaltest.zip into the Cityscapes folder (config.cityscapes_dir)')
        with Image.open(label_ids) as im:
            return cityscapes_train_ids(_one_channel(im, label_ids))
    with Image.open(path) as im:
        ids = _one_channel(im, path)
    return ids if path.endswith('_trainIds.png') else cityscapes_train_ids(ids)


class CityscapesTable:
    """gan-compression's mIoU table (``datasets/val_table.txt``, written by its
    ``prepare_cityscapes_dataset.py``): one line ``<index> <gtFine ..._trainIds.png> <leftImg8bit ...png>``
    per image of its pix2pix Cityscapes split (``<index>.jpg``), paths relative to ``root``, the original
    Cityscapes folder. ``train_ids(names)`` finds each name as the original's ``SegList`` does: the
    first line whose index is the name (without extension) or whose photo path, less ``.png``, ends with it."""

    def __init__(self, table_path: str, root: str):
        table_path, self.root = os.path.expanduser(os.fspath(table_path)), os.path.expanduser(os.fspath(root))
        if not os.path.isfile(table_path):
            raise FileNotFoundError(f'no Cityscapes mIoU table at {table_path}: gan-compression\'s '
                                    'datasets/prepare_cityscapes_dataset.py writes it (--val_table_path) beside the '
                                    'pix2pix split it makes; pass it as config.cityscapes_table')
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f'Cityscapes folder {self.root} (holding gtFine/) does not exist; pass the '
                                    'original Cityscapes folder as config.cityscapes_dir')
        with open(table_path) as f:
            self.rows = [line.split() for line in f if line.strip()]
        bad = [r for r in self.rows if len(r) != 3]
        if bad:
            raise ValueError(f'{table_path}: expected lines "<index> <gtFine path> <leftImg8bit path>", got {bad[0]}')

    def path_of(self, name: str) -> str:
        stem = os.path.splitext(os.path.basename(name))[0]
        for index, label, photo in self.rows:
            if index == stem or photo[:-len('.png')].endswith(stem):
                return os.path.join(self.root, label)
        raise KeyError(f'{name!r} is not in the Cityscapes mIoU table ({len(self.rows)} rows); was the split '
                       'prepared by the same prepare_cityscapes_dataset.py run as the table?')

    def train_ids(self, names) -> list:
        return [read_train_ids(self.path_of(n)) for n in names]


def frame_key(filename: str) -> str:
    """'<city>_<seq>_<frame>': the first three '_' fields, which the original matches files by."""
    return '_'.join(os.path.basename(filename).split('_')[:3])


def _natural_key(text: str):
    """Sort key treating digit runs as numbers ('a_2' before 'a_10'), as the original's natural_sort."""
    return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', text)]


def _one_channel(im: Image.Image, what: str) -> np.ndarray:
    if im.mode not in ('L', 'P'):
        raise ValueError(f'{what} has PIL mode {im.mode}, expected an 8-bit single-channel PNG')
    return np.asarray(im, dtype=np.uint8)


def _decode_frame(paths):
    """(label 8-bit gray PNG, instance uint16 [h, w], image RGB PNG); raises if unusable."""
    with Image.open(paths['label']) as im:
        label = _one_channel(im, 'label map')
    with Image.open(paths['instance']) as im:
        # 16-bit PNGs open as 'I;16' (or 'I' on older Pillow); ids such as 26001 exceed uint8
        instance = np.asarray(im) if im.mode != 'P' else _one_channel(im, 'instance map')
    if instance.ndim != 2 or instance.min() < 0 or instance.max() > 0xFFFF:
        raise ValueError(f'instance map of shape {instance.shape} / range [{instance.min()}, '
                         f'{instance.max()}] is not a single-channel 16-bit map')
    with open(paths['image'], 'rb') as f:
        image = _rgb(f.read())
    if not label.shape == instance.shape == image.shape[:2]:
        raise ValueError(f'sizes differ: label {label.shape}, instance {instance.shape}, image {image.shape[:2]}')
    return _png(label), instance.astype(np.uint16), _png(image)


class Cityscapes(_CodePathHere, tfds.core.GeneratorBasedBuilder):
    """Cityscapes fine annotations for GauGAN: label ids, instance ids and the photo of each frame.

    Registered as 'cityscapes_fine', since TFDS' catalog has its own (download-based) 'cityscapes'.
    """

    name = 'cityscapes_fine'
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'labelIds (uint8 PNG), instanceIds (uint16, zlib) and leftImg8bit '
                              '(RGB PNG) at native size.'}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _CITYSCAPES_LAYOUT
    num_workers = min(8, os.cpu_count() or 1)

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                'label': tfds.features.Image(shape=(None, None, 1), encoding_format='png'),
                # TFDS' NumPy decoder reads 16-bit PNGs only through OpenCV, so the ids are a
                # zlib-compressed uint16 tensor (lossless, and about as small for these maps)
                'instance': tfds.features.Tensor(shape=(None, None), dtype=np.uint16, encoding='zlib'),
                'image': tfds.features.Image(shape=(None, None, 3), encoding_format='png'),
                'name': tfds.features.Text(),
            }),
            supervised_keys=None,
            homepage='https://www.cityscapes-dataset.com',
            citation='Cordts et al. The Cityscapes Dataset for Semantic Urban Scene Understanding. CVPR 2016.',
        )

    def _split_generators(self, dl_manager):
        root = _manual_path(dl_manager, 'Cityscapes', _CITYSCAPES_LAYOUT)
        self.skipped_files, self.incomplete_frames, splits = {}, {}, {}
        for split in CITYSCAPES_SPLITS:
            if os.path.isdir(os.path.join(root, 'gtFine', split)):
                splits[split] = self._generate_examples(split, self._frames(root, split))
        if not splits:
            raise FileNotFoundError(f'Cityscapes: neither gtFine/train nor gtFine/val under {root}.\n'
                                    f'{_CITYSCAPES_LAYOUT}')
        return splits

    def _frames(self, root, split):
        """Sorted [(key, {kind: path})] of frames with all three files; the rest counted as skipped."""
        found = {}
        for kind, (top, suffix) in _CITYSCAPES_FILES.items():
            folder = os.path.join(root, top, split)
            for dirpath, dirs, files in os.walk(folder, followlinks=True):
                dirs.sort()
                for f in files:
                    if f.endswith(suffix):
                        found.setdefault(frame_key(f), {})[kind] = os.path.join(dirpath, f)
        complete = sorted((k for k, v in found.items() if len(v) == 3), key=_natural_key)
        incomplete = sorted(k for k, v in found.items() if len(v) < 3)
        if not complete:
            raise FileNotFoundError(
                f'Cityscapes: no frame of split {split!r} under {root} has all of '
                f'{[s for _, s in _CITYSCAPES_FILES.values()]} (e.g. {incomplete[:_NAMED]}).\n'
                f'{_CITYSCAPES_LAYOUT}')
        if incomplete:
            missing = [f"{k} (no {', '.join(sorted(_CITYSCAPES_FILES.keys() - found[k].keys()))})"
                       for k in incomplete[:_NAMED]]
            log.warning('Cityscapes: split %s: skipped %d frame(s) missing a file (%d complete), e.g. %s',
                        split, len(incomplete), len(complete), ', '.join(missing))
        self.incomplete_frames[split] = incomplete
        return [(k, found[k]) for k in complete]

    def _generate_examples(self, split, frames):
        bad, reasons, kept = self.skipped_files.setdefault(split, []), [], 0
        decoded = _parallel(lambda f: _try(_decode_frame, f[1]), frames, self.num_workers)
        for (key, _), ex in zip(frames, decoded):
            if isinstance(ex, _Broken):  # a broken file, or the three maps of different sizes
                bad.append(key)
                reasons.append(ex)
                continue
            kept += 1
            label, instance, image = ex
            yield key, {'label': label, 'instance': instance, 'image': image, 'name': key}
        _report_skipped('Cityscapes', split, bad, reasons, kept, len(frames), f'gtFine/{split}')
