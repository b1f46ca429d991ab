"""Input pipeline: the procedural dataset, the TFDS builders (FFHQ from a folder or zip), and
the deterministic per-host stream of resolution pyramids."""
import logging
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from anycost_jax.data import builders, pipeline, procedural

NO_GCS = tfds.download.DownloadConfig(try_download_gcs=False)


# ---------------------------------------------------------------------------- procedural


def test_procedural_is_deterministic_and_seeded():
    a = procedural.render_example(7, 32)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    np.testing.assert_array_equal(a, procedural.render_example(7, 32))
    assert not np.array_equal(a, procedural.render_example(7, 32, seed=1))
    assert not np.array_equal(a, procedural.render_example(8, 32))
    for r in (8, 33, 100):  # any size
        assert procedural.render_example(3, r).shape == (r, r, 3)


def test_procedural_has_visible_variety():
    images = np.stack([procedural.render_example(i, 32) for i in range(64)])
    assert len({im.tobytes() for im in images}) == 64
    scenes = [procedural.scene(i) for i in range(64)]
    kinds = {s['kind'] for sc in scenes for s in sc['shapes']}
    colors = {s['color'] for sc in scenes for s in sc['shapes']}
    counts = {len(sc['shapes']) for sc in scenes}
    assert kinds == set(procedural.KINDS) and colors == set(range(4)) and counts == {1, 2, 3}
    # every scene shows a saturated shape color somewhere (shapes stay in frame)
    for i, (im, sc) in enumerate(zip(images, scenes)):
        palette = procedural.COLORS[[s['color'] for s in sc['shapes']]]
        dist = np.abs(im[:, :, None, :].astype(np.float32) - palette).max(-1)
        assert (dist < 8).any(), procedural.describe(i)
    assert images.reshape(64, -1).std(1).min() > 10  # not flat


def test_procedural_same_scene_at_every_resolution():
    hi = procedural.render_example(5, 128)[None]
    lo = procedural.render_example(5, 32).astype(np.float32)[None]
    down = pipeline.resize_like_original(hi, 32).astype(np.float32)
    assert np.abs(down - lo).mean() < 2.0  # only edge pixels differ


# ---------------------------------------------------------------------------- builders


def _write_images(folder):
    """5 decodable images (RGB, grayscale JPEG, RGBA, non-square, nested) + a corrupt one."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'sub').mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / 'rgb.png')
    Image.fromarray(np.full((36, 36), 100, np.uint8), 'L').save(folder / 'gray.jpg')
    Image.fromarray(np.tile(np.array([10, 200, 30, 128], np.uint8), (32, 32, 1)), 'RGBA').save(folder / 'rgba.png')
    wide = np.zeros((32, 48, 3), np.uint8)
    wide[:, :8] = (255, 0, 0)
    wide[:, 8:40] = (0, 0, 255)
    wide[:, 40:] = (255, 0, 0)
    Image.fromarray(wide).save(folder / 'wide.png')  # the center crop is all blue
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / 'sub' / 'deep.jpg')
    (folder / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n definitely not a png')
    (folder / 'notes.txt').write_text('ignored')


@pytest.fixture(scope='module')
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ffhq_images')
    _write_images(folder)
    return folder


@pytest.fixture(scope='module')
def image_zip(image_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp('ffhq_zip') / 'images.zip'
    with zipfile.ZipFile(path, 'w') as zf:
        for f in sorted(image_dir.rglob('*')):
            if f.is_file():
                zf.write(f, f.relative_to(image_dir).as_posix())
    return path


def _prepare_ffhq(data_dir, manual_dir, caplog):
    b = builders.Ffhq(config='32', data_dir=data_dir, file_format='array_record')
    with caplog.at_level(logging.WARNING, logger='anycost_jax.data.builders'):
        b.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir, try_download_gcs=False))
    return b


@pytest.mark.parametrize('layout', ['folder', 'zip', 'folder_with_zip'])
def test_ffhq_builder(layout, image_dir, image_zip, tmp_path, caplog):
    if layout == 'folder':
        manual, prefix = image_dir, ''
    elif layout == 'zip':
        manual, prefix = image_zip, 'images.zip/'
    else:
        manual = tmp_path / 'manual'
        manual.mkdir()
        (manual / 'images.zip').write_bytes(image_zip.read_bytes())
        prefix = 'images.zip/'
    b = _prepare_ffhq(tmp_path / 'tfds', manual, caplog)
    assert b.info.splits['train'].num_examples == 5
    assert b.skipped_files == [prefix + 'corrupt.png']
    warning = [r.getMessage() for r in caplog.records if 'undecodable' in r.getMessage()]
    assert len(warning) == 1 and 'skipped 1 undecodable' in warning[0] and 'corrupt.png' in warning[0]

    examples = {ex['filename'].decode(): ex['image'] for ex in b.as_data_source('train')}
    names = ['rgb.png', 'gray.jpg', 'rgba.png', 'wide.png', 'sub/deep.jpg']
    assert sorted(examples) == sorted(prefix + f for f in names)
    for im in examples.values():
        assert im.shape == (32, 32, 3) and im.dtype == np.uint8
    gray = examples[prefix + 'gray.jpg'].astype(int)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert (examples[prefix + 'rgba.png'] == (10, 200, 30)).all()
    assert (examples[prefix + 'wide.png'] == (0, 0, 255)).all()


def test_ffhq_builder_missing_manual_dir(tmp_path):
    missing = tmp_path / 'no_such_dir'
    config = tfds.download.DownloadConfig(manual_dir=missing, try_download_gcs=False)
    b = builders.Ffhq(config='32', data_dir=tmp_path / 'tfds')
    with pytest.raises(FileNotFoundError, match='no_such_dir') as e:
        b.download_and_prepare(download_config=config)
    assert '.png' in str(e.value) and '.zip' in str(e.value)
    missing.mkdir()  # empty
    with pytest.raises(FileNotFoundError, match='empty'):
        b.download_and_prepare(download_config=config)


def test_shapes_builder_matches_renderer(tmp_path):
    b = builders.AnycostShapes(config=builders.ShapesConfig(name='16_8', resolution=16, num_train=8),
                               data_dir=tmp_path, file_format='array_record')
    b.download_and_prepare(download_config=NO_GCS)
    for ex in b.as_data_source('train'):
        np.testing.assert_array_equal(ex['image'], procedural.render_example(int(ex['index']), 16))
    assert builders.AnycostShapes.builder_configs['64'].num_train == 10_000


# ---------------------------------------------------------------------------- pipeline

N_SHAPES = 40


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    config = builders.ShapesConfig(name=f'16_{N_SHAPES}', resolution=16, num_train=N_SHAPES)
    b = builders.AnycostShapes(config=config,
                               data_dir=tmp_path_factory.mktemp('tfds'), file_format='array_record')
    b.download_and_prepare(download_config=NO_GCS)
    return b


def _iter(shapes, **kw):
    args = dict(resolution=16, n_res=3, global_batch=8, seed=3, process_index=0, process_count=1)
    args.update(kw)
    return pipeline.create_input_iter(shapes, **args)


def _take(it, n):
    with it:
        return [next(it) for _ in range(n)]


def test_batches_are_pyramids(shapes):
    (batch,) = _take(_iter(shapes), 1)
    assert [x.shape for x in batch] == [(8, 16, 16, 3), (8, 8, 8, 3), (8, 4, 4, 3)]
    for x in batch:
        assert x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    # every level is resized from level 0 as the original's MultiResize does (PIL bilinear on the
    # uint8 example, flipped afterwards): same crop, same flip
    it = _iter(shapes)
    idx, flips = it.indices(0)
    source = it.source.get(idx)
    it.close()
    for level in batch[1:]:
        r = level.shape[1]
        want = np.stack([np.asarray(Image.fromarray(im).resize((r, r), Image.BILINEAR)) for im in source])
        want[flips] = want[flips, :, ::-1]
        np.testing.assert_array_equal(np.round((level + 1) * 127.5), want)
        # which is not the 2x2 box filter of the previous level
        box = batch[0].reshape(8, r, 16 // r, r, 16 // r, 3).mean((2, 4))
        assert np.abs(level - box).max() > 0.05


def test_flip_is_per_example_and_same_for_every_level(shapes):
    flipped, plain = _take(_iter(shapes, flip=True), 3), _take(_iter(shapes, flip=False), 3)
    it = _iter(shapes)
    flags = np.concatenate([it.indices(s)[1] for s in range(3)])
    it.close()
    assert 0 < flags.sum() < len(flags)
    for level in range(3):
        f = np.concatenate([b[level] for b in flipped])
        p = np.concatenate([b[level] for b in plain])
        np.testing.assert_array_equal(f[flags], p[flags][:, :, ::-1])
        np.testing.assert_array_equal(f[~flags], p[~flags])


def test_epochs_are_permutations(shapes):
    it = _iter(shapes)
    idx = np.concatenate([it.indices(s)[0] for s in range(10)])  # two epochs of 40
    it.close()
    assert sorted(idx[:N_SHAPES]) == list(range(N_SHAPES)) and sorted(idx[N_SHAPES:]) == list(range(N_SHAPES))
    assert not np.array_equal(idx[:N_SHAPES], idx[N_SHAPES:])
    other = _iter(shapes, seed=4)
    assert not np.array_equal(other.indices(0)[0], idx[:8])
    other.close()


def test_hosts_split_the_global_batch(shapes):
    steps = 7  # crosses the epoch boundary at step 5
    whole = _take(_iter(shapes, global_batch=8), steps)
    hosts = [_take(_iter(shapes, global_batch=8, process_index=h, process_count=2), steps) for h in range(2)]
    for s in range(steps):
        for level in range(3):
            assert hosts[0][s][level].shape[0] == 4
            np.testing.assert_array_equal(np.concatenate([hosts[0][s][level], hosts[1][s][level]]), whole[s][level])
    its = [_iter(shapes, process_index=h, process_count=2) for h in range(2)]
    for s in range(steps):
        a, b = (it.indices(s)[0] for it in its)
        assert not set(a) & set(b) and len(set(a) | set(b)) == 8
    for it in its:
        it.close()


def test_resume_continues_the_stream(shapes):
    fresh = _take(_iter(shapes), 7)
    resumed_it = _iter(shapes, start_step=4)
    assert resumed_it.step == 4
    resumed = _take(resumed_it, 3)
    assert resumed_it.step == 7
    for a, b in zip(fresh[4:], resumed):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    it = _iter(shapes)
    for x, y in zip(it.batch(6), fresh[6]):  # batch(step) is the same pure function
        np.testing.assert_array_equal(x, y)
    it.close()


def test_random_access_equals_in_memory(shapes):
    with _iter(shapes) as it:
        assert isinstance(it.source, pipeline.ArraySource)  # 40 tiny images: held in memory
    streamed = _iter(shapes, in_memory_bytes=0, num_workers=2)
    assert isinstance(streamed.source, pipeline.RandomAccessSource)
    for a, b in zip(_take(streamed, 6), _take(_iter(shapes), 6)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_dataset_smaller_than_global_batch(shapes):
    with pytest.raises(ValueError, match=f'{N_SHAPES} examples.*global batch of 64'):
        _iter(shapes, global_batch=64)


def test_bad_arguments(shapes):
    with pytest.raises(ValueError, match='multiple of the process count 4'):
        _iter(shapes, global_batch=6, process_count=4)
    with pytest.raises(ValueError, match='halved'):
        _iter(shapes, n_res=6)


def test_unknown_and_unprepared_datasets(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'no_such_dataset_xyz'"):
        pipeline.create_input_iter('no_such_dataset_xyz', 32, 1, 8, 0, data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match='not prepared.*tfds build mnist'):
        pipeline.create_input_iter('mnist', 32, 1, 8, 0, data_dir=tmp_path)
    with pytest.raises(ValueError, match='resolutions'):
        pipeline.create_input_iter('ffhq', 48, 1, 8, 0, data_dir=tmp_path)


def test_named_datasets_pick_the_resolution_config(tmp_path):
    b, ours = pipeline._builder('anycost_shapes', 32, tmp_path)
    assert ours and b.builder_config.resolution == 32 and b.builder_config.num_train == 10_000


def test_ffhq_by_name_prepares_from_manual_dir(image_dir, tmp_path):
    it = pipeline.create_input_iter('ffhq', 32, 2, 4, seed=0, data_dir=tmp_path, manual_dir=image_dir,
                                    process_index=0, process_count=1)
    batches = _take(it, 3)
    assert [x.shape for x in batches[0]] == [(4, 32, 32, 3), (4, 16, 16, 3)]
    with pytest.raises(ValueError, match='5 examples.*global batch of 8'):  # prepared now: no manual_dir
        pipeline.create_input_iter('ffhq', 32, 2, 8, seed=0, data_dir=tmp_path, process_index=0, process_count=1)


def test_tfrecord_datasets_are_read_into_memory(tmp_path):
    b = builders.AnycostShapes(config=builders.ShapesConfig(name='16_12', resolution=16, num_train=12),
                               data_dir=tmp_path, file_format='tfrecord')
    b.download_and_prepare(download_config=NO_GCS)
    with pytest.raises(ValueError, match='array_record'):
        pipeline.load_source(b, 16, in_memory_bytes=1000)
    src = pipeline.load_source(b, 8)  # resized on load
    assert isinstance(src, pipeline.ArraySource) and src.images.shape == (12, 8, 8, 3)
    expected = {procedural.render_example(i, 16).tobytes() for i in range(12)}
    full = pipeline.load_source(b, 16)
    assert {im.tobytes() for im in full.images} == expected


def test_forgotten_iterator_stops_its_thread(shapes):
    import gc
    it = _iter(shapes)
    next(it)
    thread = it._thread
    del it
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_reader_errors_reach_the_training_loop():
    class Broken:
        def __len__(self):
            return 16

        def get(self, indices, pool=None):
            raise OSError('disk gone')

    it = pipeline.InputIterator(Broken(), resolution=8, n_res=1, global_batch=4, seed=0)
    with pytest.raises(OSError, match='disk gone'):
        next(it)
