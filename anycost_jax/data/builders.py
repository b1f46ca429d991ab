"""TFDS builders: FFHQ from local images, and the embedded procedural shapes.

Neither builder ever downloads. Both store a square RGB `image` feature (PNG) at the
config's resolution, so the pipeline only has to decode:

    from anycost_jax.data import builders
    b = builders.Ffhq(config='256', data_dir='~/tensorflow_datasets', file_format='array_record')
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir='~/ffhq'))
    b = builders.AnycostShapes(config='64', data_dir=...)   # generated, no input at all

Prepare with `file_format='array_record'` (the pipeline does): it gives random access, which
the pipeline needs for its deterministic per-step order.
"""
import concurrent.futures
import dataclasses
import io
import logging
import os
import zipfile

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image
from tensorflow_datasets.core import utils as tfds_utils

from anycost_jax.data import procedural

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
FFHQ_RESOLUTIONS = (32, 64, 128, 256, 512, 1024)
SHAPES_RESOLUTIONS = (16, 32, 64, 128, 256)
_CHUNK = 256  # files read (sequentially) and then decoded in parallel per round


def square_rgb(image, resolution: int) -> np.ndarray:
    """Any image (PIL or uint8 array HW / HWC with 1, 3 or 4 channels) -> uint8 [r, r, 3].

    Grayscale and palette images become RGB and alpha is dropped. A non-square image is
    center-cropped to its shorter side. The result is resized with Lanczos, which is
    antialiased when shrinking (PIL widens the kernel by the scale factor).
    """
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.dtype != np.uint8:
            raise ValueError(f'expected uint8 image, got {image.dtype}')
        if image.ndim == 3 and image.shape[-1] == 3 and image.shape[0] == image.shape[1] == resolution:
            return image
        image = Image.fromarray(image)
    if image.mode != 'RGB':
        image = image.convert('RGB')
    w, h = image.size
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        image = image.crop((left, top, left + s, top + s))
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format='png', compress_level=3)
    return buf.getvalue()


def _decode_to_png(data: bytes, resolution: int):
    """Encoded file bytes -> PNG bytes of the square RGB image, or None if undecodable."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return _png(square_rgb(im, resolution))
    except Exception:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
        return None


def _is_image(name: str) -> bool:
    base = os.path.basename(name)
    return name.lower().endswith(IMAGE_EXTENSIONS) and not base.startswith('._') and '__MACOSX' not in name


def list_image_files(path):
    """Sorted (key, reader) pairs for every image under `path`: a folder (recursive), whose
    .zip files are read as well, or a single .zip file. Keys are relative paths; a member of a
    zip is keyed 'archive.zip/member'."""
    path = os.fspath(path)
    items = []

    def add_zip(zpath, prefix):
        with zipfile.ZipFile(zpath) as zf:
            for name in sorted(zf.namelist()):
                if not name.endswith('/') and _is_image(name):
                    items.append((f'{prefix}{name}', (zpath, name)))

    if os.path.isfile(path):
        if not zipfile.is_zipfile(path):
            raise ValueError(f'{path} is a file but not a .zip archive of images')
        add_zip(path, os.path.basename(path) + '/')
        return items
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            full = os.path.join(root, f)
            rel = os.path.relpath(full, path).replace(os.sep, '/')
            if _is_image(f):
                items.append((rel, full))
            elif f.lower().endswith('.zip') and zipfile.is_zipfile(full):
                add_zip(full, rel + '/')
    return items


def _read_all(items):
    """Bytes of each item, in order, keeping one zip handle open at a time."""
    open_zip = (None, None)
    try:
        for _, src in items:
            if isinstance(src, tuple):
                if open_zip[0] != src[0]:
                    if open_zip[1] is not None:
                        open_zip[1].close()
                    open_zip = (src[0], zipfile.ZipFile(src[0]))
                yield open_zip[1].read(src[1])
            else:
                with open(src, 'rb') as f:
                    yield f.read()
    finally:
        if open_zip[1] is not None:
            open_zip[1].close()


class _CodePathHere:
    """tfds finds a builder's source via `importlib_resources`, a backport it only installs on
    Python < 3.9, so out-of-tree builders fail on 3.11 without this."""

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(__file__)


@dataclasses.dataclass(eq=False)
class ImageConfig(tfds.core.BuilderConfig):
    """A config that fixes the stored resolution."""
    resolution: int = 256


@dataclasses.dataclass(eq=False)
class ShapesConfig(tfds.core.BuilderConfig):
    """The procedural dataset: `num_train` scenes of `procedural.render_example(i, r, seed)`."""
    resolution: int = 64
    num_train: int = 10_000
    seed: int = 0


_FFHQ_LAYOUT = """\
Put the FFHQ images (https://github.com/NVlabs/ffhq-dataset) in the manual directory, as
either or both of:
  - a folder of .png / .jpg files, any depth (e.g. images1024x1024/00000/00000.png);
  - .zip archives of such files (e.g. images1024x1024.zip).
Or point manual_dir at a single .zip file. Any other set of face images works the same way:
grayscale and RGBA become RGB, non-square images are center-cropped, and everything is
resized (Lanczos, antialiased) to the config's resolution. Undecodable files are skipped
and counted in the log. Nothing is downloaded.
"""


class Ffhq(_CodePathHere, tfds.core.GeneratorBasedBuilder):
    """FFHQ (Karras et al. 2019), 70k faces, from a local folder or zip; one config per resolution."""

    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Square RGB PNGs at the config resolution, from a local folder or zip.'}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _FFHQ_LAYOUT
    BUILDER_CONFIGS = [ImageConfig(name=str(r), resolution=r, description=f'{r}x{r} RGB')
                       for r in FFHQ_RESOLUTIONS]
    num_workers = min(16, os.cpu_count() or 1)

    def _info(self):
        r = self.builder_config.resolution
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                'image': tfds.features.Image(shape=(r, r, 3), encoding_format='png'),
                'filename': tfds.features.Text(),
            }),
            supervised_keys=None,
            homepage='https://github.com/NVlabs/ffhq-dataset',
            citation='Karras, Laine, Aila. A Style-Based Generator Architecture for GANs. CVPR 2019.',
        )

    def _manual_path(self, dl_manager):
        # `dl_manager.manual_dir` rejects a .zip file and its error does not show the layout;
        # read the configured path and check it ourselves.
        path = getattr(dl_manager, '_manual_dir', None)
        if path is None:
            path = dl_manager.manual_dir  # raises with tfds' own message
        path = os.fspath(path)
        if os.path.isfile(path) or (os.path.isdir(path) and os.listdir(path)):
            return path
        raise FileNotFoundError(
            f'FFHQ manual directory {path} does not exist or is empty.\n{_FFHQ_LAYOUT}'
            'Pass it as manual_dir= (create_input_iter) or '
            'download_config=tfds.download.DownloadConfig(manual_dir=...) (tfds).')

    def _split_generators(self, dl_manager):
        path = self._manual_path(dl_manager)
        items = list_image_files(path)
        if not items:
            raise FileNotFoundError(
                f'No .png/.jpg images found under FFHQ manual path {path}.\n{_FFHQ_LAYOUT}')
        return {'train': self._generate_examples(items, path)}

    def _generate_examples(self, items, path):
        r = self.builder_config.resolution
        self.skipped_files = []
        reader = _read_all(items)
        with concurrent.futures.ThreadPoolExecutor(self.num_workers) as pool:
            for start in range(0, len(items), _CHUNK):
                chunk = items[start:start + _CHUNK]
                datas = [next(reader) for _ in chunk]
                for (key, _), png in zip(chunk, pool.map(_decode_to_png, datas, [r] * len(datas))):
                    if png is None:
                        self.skipped_files.append(key)
                        continue
                    yield key, {'image': png, 'filename': key}
        n_bad = len(self.skipped_files)
        if n_bad == len(items):
            raise ValueError(f'None of the {len(items)} image files under {path} could be decoded, '
                             f'e.g. {self.skipped_files[:5]}')
        if n_bad:
            log.warning('Ffhq/%d: skipped %d undecodable file(s) of %d under %s, e.g. %s',
                        r, n_bad, len(items), path, ', '.join(self.skipped_files[:5]))


class AnycostShapes(_CodePathHere, tfds.core.GeneratorBasedBuilder):
    """The embedded procedural dataset (see `procedural`): generated, deterministic, no input."""

    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Discs, squares and rings on a gradient.'}
    BUILDER_CONFIGS = [ShapesConfig(name=str(r), resolution=r, description=f'10k scenes at {r}x{r}')
                       for r in SHAPES_RESOLUTIONS]

    def _info(self):
        r = self.builder_config.resolution
        return self.dataset_info_from_configs(
            description=procedural.__doc__,
            features=tfds.features.FeaturesDict({
                'image': tfds.features.Image(shape=(r, r, 3), encoding_format='png'),
                'index': np.int64,
            }),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download or read
        return {'train': self._generate_examples()}

    def _generate_examples(self):
        cfg = self.builder_config
        for i in range(cfg.num_train):
            yield i, {'image': _png(procedural.render_example(i, cfg.resolution, cfg.seed)), 'index': i}
