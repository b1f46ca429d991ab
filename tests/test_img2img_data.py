"""Image-to-image data: the TFDS builders (paired, unpaired, Cityscapes) from tiny folders, the
original's preprocessing against a plain PIL reference, and the deterministic per-host streams."""
import contextlib
import logging

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from anycost_jax.data import img2img_builders as ib
from anycost_jax.data import img2img_pipeline as ip

RNG = np.random.default_rng(0)


def _rand(h, w, c=3):
    return RNG.integers(0, 256, (h, w, c) if c else (h, w), dtype=np.uint8)


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def _corrupt(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'\x89PNG\r\n\x1a\n not an image at all')


def _decoded(path):
    """What a JPEG decodes to (the stored pixels must equal it)."""
    with Image.open(path) as im:
        return np.asarray(im.convert('RGB'))


@contextlib.contextmanager
def _warnings():
    """Collects the builders' warnings (module-scoped fixtures cannot use caplog)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda r: records.append(r.getMessage())
    logger = logging.getLogger(ib.__name__)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _prepare(builder, manual):
    with _warnings() as records:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=manual, try_download_gcs=False))
    return builder, records


def _by_name(builder, split):
    return {ex['name'].decode(): ex for ex in builder.as_data_source(split)}


# ---------------------------------------------------------------------------- paired


@pytest.fixture(scope='module')
def paired(tmp_path_factory):
    """train: side-by-side A | B (8x16 PNG, odd-width 8x17 PNG, 12x24 JPEG, a corrupt file);
    val: A/ and B/ folders matched by name, one unmatched A file."""
    root = tmp_path_factory.mktemp('paired')
    src = {'even.png': _save(root / 'train' / 'even.png', _rand(8, 16)),
           'odd.png': _save(root / 'train' / 'odd.png', _rand(8, 17))}
    _save(root / 'train' / 'photo.jpg', _rand(12, 24))
    src['photo.jpg'] = _decoded(root / 'train' / 'photo.jpg')
    _corrupt(root / 'train' / 'broken.png')
    val = {}
    for stem, ext_b in (('x', '.jpg'), ('y', '.png'), ('sub/w', '.png')):
        a = _save(root / 'val' / 'A' / f'{stem}.png', _rand(12, 12))
        _save(root / 'val' / 'B' / f'{stem}{ext_b}', _rand(12, 12))
        val[stem] = (a, _decoded(root / 'val' / 'B' / f'{stem}{ext_b}'))
    _save(root / 'val' / 'A' / 'lonely.png', _rand(12, 12))
    b = ib.PairedImages(data_dir=tmp_path_factory.mktemp('tfds'), file_format='array_record')
    b, warnings = _prepare(b, root)
    return b, src, val, warnings


def test_paired_halves_and_bad_files(paired):
    b, src, _, warnings = paired
    assert set(b.info.splits) == {'train', 'val'}  # no test/ folder
    examples = _by_name(b, 'train')
    assert sorted(examples) == sorted(src)
    for name, ab in src.items():
        w2 = ab.shape[1] // 2  # the original: A = [0, w // 2), B = [w // 2, w)
        np.testing.assert_array_equal(examples[name]['A'], ab[:, :w2])
        np.testing.assert_array_equal(examples[name]['B'], ab[:, w2:])
    assert examples['odd.png']['B'].shape == (8, 9, 3)
    assert b.skipped_files['train'] == ['broken.png']
    bad = [w for w in warnings if 'undecodable' in w]
    assert len(bad) == 1 and 'skipped 1 undecodable' in bad[0] and 'broken.png' in bad[0]
    assert 'UnidentifiedImageError' in bad[0]  # the reason is logged, not only the count


def test_paired_folders_matched_by_name(paired):
    b, _, val, warnings = paired
    examples = _by_name(b, 'val')
    assert sorted(examples) == sorted(val)  # x.png pairs with x.jpg; subfolders keep their path
    for stem, (a, bb) in val.items():
        np.testing.assert_array_equal(examples[stem]['A'], a)
        np.testing.assert_array_equal(examples[stem]['B'], bb)
    assert b.unmatched_files['val'] == ['A/lonely.png']
    msg = [w for w in warnings if 'without a partner' in w]
    assert len(msg) == 1 and '1 file(s)' in msg[0] and 'lonely.png' in msg[0]


def test_paired_refuses_when_nothing_matches(tmp_path):
    _save(tmp_path / 'm' / 'train' / 'A' / 'cat.png', _rand(8, 8))
    _save(tmp_path / 'm' / 'train' / 'B' / 'dog.png', _rand(8, 8))
    b = ib.PairedImages(data_dir=tmp_path / 'tfds', file_format='array_record')
    with pytest.raises(ValueError, match='share a file name') as e:
        _prepare(b, tmp_path / 'm')
    assert 'A/cat.png' in str(e.value) and 'B/dog.png' in str(e.value)


def test_two_files_with_one_name_are_ambiguous():
    items = [('x.png', None), ('x.jpg', None)]
    with pytest.raises(ValueError, match="two images named 'x'"):
        ib.match_pairs(items, [('x.png', None)], 'root/train')


def test_missing_manual_dir_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist or is empty') as e:
        _prepare(ib.UnpairedImages(data_dir=tmp_path / 'tfds'), tmp_path / 'nowhere')
    assert 'trainA' in str(e.value)
    with pytest.raises(FileNotFoundError, match='no manual_dir') as e:
        ip.load_img2img_source('paired_images/facades', 'train', data_dir=tmp_path / 'tfds')
    assert 'side by side' in str(e.value)
    with pytest.raises(ValueError, match='unknown image-to-image dataset'):
        ip.load_img2img_source('pix2pix', data_dir=tmp_path)


# ---------------------------------------------------------------------------- unpaired


@pytest.fixture(scope='module')
def unpaired(tmp_path_factory):
    root = tmp_path_factory.mktemp('unpaired')
    src = {}
    for split, n in (('trainA', 3), ('trainB', 2), ('testA', 1), ('testB', 1)):
        src[split] = {f'{i}.png': _save(root / split / f'{i}.png', _rand(12, 12)) for i in range(n)}
    _save(root / 'trainA' / 'j.jpg', _rand(12, 16))
    src['trainA']['j.jpg'] = _decoded(root / 'trainA' / 'j.jpg')
    _corrupt(root / 'trainB' / 'zz.jpg')
    data_dir = tmp_path_factory.mktemp('tfds')
    source = ip.load_img2img_source('unpaired_images/horse2zebra', 'train', data_dir=data_dir, manual_dir=root)
    return data_dir, root, src, source


def test_unpaired_builder(unpaired):
    data_dir, root, src, source = unpaired
    b = ip.img2img_builder('unpaired_images/horse2zebra', data_dir)
    assert b.is_prepared() and set(b.info.splits) == {'trainA', 'trainB', 'testA', 'testB'}
    for split, images in src.items():
        examples = _by_name(b, split)
        assert sorted(examples) == sorted(images)
        for name, im in images.items():
            np.testing.assert_array_equal(examples[name]['image'], im)
    assert isinstance(source, ip.UnpairedSource) and len(source) == 4  # max(4 A, 2 B)
    assert (len(source.a), len(source.b)) == (4, 2)  # zz.jpg skipped
    single = ip.load_img2img_source('unpaired_images/horse2zebra', 'testB', data_dir=data_dir)
    assert len(single) == 1 and single.keys == ('image',)
    with pytest.raises(ValueError, match="no split 'val'"):
        ip.load_img2img_source('unpaired_images/horse2zebra', 'val', data_dir=data_dir)


def test_unpaired_stream_order_and_b_draws(unpaired):
    source = unpaired[3]
    opt = ip.Preprocess('resize_and_crop', load_size=10, crop_size=8)
    with ip.UnpairedStream(source, global_batch=2, seed=5, preprocess=opt, process_index=0,
                           process_count=1) as it:
        a_idx = np.concatenate([it.order(s)[1] % 4 for s in range(2)])  # one epoch: 4 positions
        b_idx = np.concatenate([it.b_indices(it.order(s)[0]) for s in range(50)])
        batch = it.batch_at(0)
    assert sorted(a_idx) == [0, 1, 2, 3]  # every A once per epoch
    assert set(b_idx) == {0, 1}  # B uniform over its own examples
    assert batch['A'].shape == batch['B'].shape == (2, 8, 8, 3)
    # B of a position is the transformed B example its index names, with its own crop / flip
    it = ip.UnpairedStream(source, global_batch=2, seed=5, preprocess=opt, process_index=0, process_count=1)
    pos, _ = it.order(0)
    for j, (p, u) in enumerate(zip(pos, it.draws(pos, 2))):
        img = Image.fromarray(source.b.get([it.b_indices(pos)[j]])['image'][0])
        want = ip.transform(img, opt, ip.draw_params(opt, img.size, u, shared=False))
        np.testing.assert_array_equal(batch['B'][j], ip.photo_to_float(np.asarray(want)))
    it.close()


def test_unpaired_crop_is_square_and_refuses_small_images():
    opt = ip.Preprocess('scale_width_and_crop', load_size=12, crop_size=6)
    params = ip.draw_params(opt, (24, 16), (0.99, 0.99, 0.0), shared=False)
    assert params.crop_size == (6, 6) and params.crop_pos == (6, 2)  # after scaling: 12x8
    with pytest.raises(ValueError, match='smaller than crop_size'):
        ip.draw_params(opt, (24, 8), (0.5, 0.5, 0.5), shared=False)  # 12x4 after scaling


# ---------------------------------------------------------------------------- preprocessing


def _reference(image, load, box, flip, method=Image.BICUBIC):
    """The original's resize_and_crop on PIL, written out: resize to (load, load), crop the box,
    mirror, then ToTensor + Normalize((0.5,) * 3, (0.5,) * 3)."""
    im = Image.fromarray(image).resize((load, load), method).crop(box)
    if flip:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    x = np.asarray(im).astype(np.float32) / np.float32(255)
    return (x - np.float32(0.5)) / np.float32(0.5)


@pytest.mark.parametrize('pos,flip', [((0, 0), False), ((2, 1), True), ((4, 4), False)])
def test_transform_matches_pil_reference(pos, flip):
    image = _rand(12, 12)
    opt = ip.Preprocess(load_size=14, crop_size=10)
    got = ip.transform(Image.fromarray(image), opt, ip.Params(pos, (10, 10), flip))
    want = _reference(image, 14, (pos[0], pos[1], pos[0] + 10, pos[1] + 10), flip)
    np.testing.assert_array_equal(ip.photo_to_float(np.asarray(got)), want)


def test_other_modes_follow_the_original():
    image = Image.fromarray(_rand(10, 13))  # w 13, h 10
    # 'none': sides rounded to multiples of 4 with Python's round (13 / 4 -> 12, 10 / 4 = 2.5 -> 8)
    got = ip.transform(image, ip.Preprocess('none'), ip.Params())
    assert got.size == (12, 8)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(image.resize((12, 8), Image.BICUBIC)))
    # scale_width: width to load_size, height int(load * h / w)
    got = ip.transform(image, ip.Preprocess('scale_width', load_size=26), ip.Params(flip=True))
    want = image.resize((26, 20), Image.BICUBIC).transpose(Image.FLIP_LEFT_RIGHT)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # scale_width_and_crop, paired: the original's (crop, crop * h // w) box at offsets in range
    opt = ip.Preprocess('scale_width_and_crop', load_size=16, crop_size=8)
    p = ip.draw_params(opt, (16, 8), (0.999, 0.999, 0.7))
    assert p == ip.Params((8, 4), (8, 4), True)  # scaled 16x8, crop 8x4, offsets at their maxima
    assert ip.draw_params(ip.Preprocess(no_flip=True), (16, 8), (0, 0, 0.9)).flip is False


def _paired_source(n=6, size=12, same=False):
    a = _rand(n * size, size).reshape(n, size, size, 3)
    return ip.Img2ImgArraySource(A=a, B=a.copy() if same else 255 - a)


OPT = ip.Preprocess(load_size=14, crop_size=10)


def _paired(source, **kw):
    args = dict(global_batch=4, seed=1, preprocess=OPT, process_index=0, process_count=1)
    args.update(kw)
    return ip.PairedStream(source, **args)


def test_paired_stream_equals_reference_and_shares_params():
    source = _paired_source()
    with _paired(source) as it:
        batches = {s: it.batch_at(s) for s in range(3)}
        seen = []
        for s, batch in batches.items():
            pos, idx = it.order(s)
            for j, u in enumerate(it.draws(pos, 0)):
                p = ip.draw_params(OPT, (12, 12), u)
                (x, y), (tw, th) = p.crop_pos, p.crop_size
                assert 0 <= x <= 4 and 0 <= y <= 4 and (tw, th) == (10, 10)
                box = (x, y, x + tw, y + th)
                a = source.features['A'][idx[j]]
                np.testing.assert_array_equal(batch['A'][j], _reference(a, 14, box, p.flip))
                np.testing.assert_array_equal(batch['B'][j], _reference(255 - a, 14, box, p.flip))
                seen.append((x, y, p.flip))
    assert len({s[2] for s in seen}) == 2 and len({s[:2] for s in seen}) > 3  # real variety


def test_a_and_b_share_crop_and_flip_and_btoa_swaps():
    same = _paired_source(same=True)
    with _paired(same) as it:
        batch = it.batch_at(2)
    np.testing.assert_array_equal(batch['A'], batch['B'])
    source = _paired_source()
    with _paired(source) as ab, _paired(source, direction='BtoA') as ba:
        x, y = ab.batch_at(1), ba.batch_at(1)
    np.testing.assert_array_equal(x['A'], y['B'])
    np.testing.assert_array_equal(x['B'], y['A'])
    with pytest.raises(ValueError, match='direction'):
        _paired(source, direction='AB')


def test_stream_is_deterministic_and_resumes_exactly():
    source = _paired_source()
    with _paired(source) as it:
        full = [next(it) for _ in range(5)]
    with _paired(source, start_step=3) as resumed:
        tail = [next(resumed) for _ in range(2)]
    with _paired(source) as again, _paired(source, seed=2) as other:
        np.testing.assert_array_equal(again.batch_at(4)['A'], full[4]['A'])
        assert not np.array_equal(other.batch_at(4)['A'], full[4]['A'])
    for got, want in zip(tail, full[3:]):
        for k in ('A', 'B'):
            np.testing.assert_array_equal(got[k], want[k])
    for x in full[0].values():
        assert x.dtype == np.float32 and x.shape == (4, 10, 10, 3) and -1 <= x.min() and x.max() <= 1


def test_host_shares_concatenate_to_the_global_batch():
    source = _paired_source()
    with _paired(source) as single:
        want = single.batch_at(2)
    shares = []
    for h in range(2):
        with _paired(source, process_index=h, process_count=2) as it:
            shares.append(it.batch_at(2))
    for k in ('A', 'B'):
        assert shares[0][k].shape[0] == 2
        np.testing.assert_array_equal(np.concatenate([s[k] for s in shares]), want[k])
    with pytest.raises(ValueError, match='multiple of the process count 3'):
        _paired(source, process_count=3)


def test_sizes_that_differ_after_preprocessing_are_refused():
    source = ip.Img2ImgArraySource(A=[_rand(8, 8), _rand(8, 16)], B=[_rand(8, 8), _rand(8, 16)])
    with pytest.raises(ValueError, match='different sizes after preprocessing'):
        with _paired(source, global_batch=2, preprocess=ip.Preprocess('scale_width', load_size=8)) as it:
            it.batch_at(0)


def test_create_img2img_iter_picks_the_stream(unpaired, cityscapes):
    data_dir = unpaired[0]
    opt = ip.Preprocess(load_size=10, crop_size=8)
    args = dict(global_batch=2, seed=0, preprocess=opt, process_index=0, process_count=1)
    with ip.create_img2img_iter('unpaired_images/horse2zebra', data_dir=data_dir, **args) as it:
        assert isinstance(it, ip.UnpairedStream) and next(it)['A'].shape == (2, 8, 8, 3)
    with ip.create_img2img_iter(cityscapes[0], **args) as it:
        assert isinstance(it, ip.CityscapesStream) and next(it)['label'].shape == (2, 8, 8)
    with pytest.raises(ValueError, match="pass split='train'"):
        ip.create_img2img_iter('unpaired_images/horse2zebra', split='trainA', data_dir=data_dir, **args)


def test_procedural_source_feeds_the_streams():
    opt = ip.Preprocess(load_size=18, crop_size=16)
    with ip.PairedStream(ip.procedural_source('edges2image', 4, 16), global_batch=2, seed=0,
                         preprocess=opt, process_index=0, process_count=1) as it:
        assert it.batch_at(0)['A'].shape == (2, 16, 16, 3)
    with ip.UnpairedStream(ip.procedural_source('recolor', 4, 16), global_batch=2, seed=0,
                           preprocess=opt, process_index=0, process_count=1) as it:
        assert it.batch_at(0)['B'].shape == (2, 16, 16, 3)
    labels = ip.procedural_source('labels2image', 4, 16, labels=True)
    with ip.CityscapesStream(labels, global_batch=2, seed=0, preprocess=ip.Preprocess('none', no_flip=True),
                             process_index=0, process_count=1) as it:
        batch = it.batch_at(0)
        idx = it.order(0)[1]
    assert set(batch) == {'label', 'image'} and batch['label'].dtype == np.int32
    np.testing.assert_array_equal(batch['label'], np.stack([labels.features['label'][i] for i in idx]))


# ---------------------------------------------------------------------------- cityscapes


def _frame(root, split, city, key, h=8, w=16, instance=True):
    label = _rand(h, w, 0) % 34
    label[0, 0] = 255  # the original maps 255 ('unknown') to input_nc
    inst = RNG.choice(np.array([0, 7, 255, 256, 26001, 26002, 33000], np.uint16), (h, w))
    base = f'{city}_{key}'
    _save(root / 'gtFine' / split / city / f'{base}_gtFine_labelIds.png', label)
    if instance:
        _save(root / 'gtFine' / split / city / f'{base}_gtFine_instanceIds.png', inst)  # 16-bit PNG
    image = _save(root / 'leftImg8bit' / split / city / f'{base}_leftImg8bit.png', _rand(h, w))
    return {'label': label, 'instance': inst, 'image': image}


@pytest.fixture(scope='module')
def cityscapes(tmp_path_factory):
    root = tmp_path_factory.mktemp('cityscapes')
    frames = {'train': {'aachen_000000_000019': _frame(root, 'train', 'aachen', '000000_000019'),
                        'bremen_000002_000010': _frame(root, 'train', 'bremen', '000002_000010')},
              'val': {'lindau_000000_000001': _frame(root, 'val', 'lindau', '000000_000001')}}
    _frame(root, 'train', 'bremen', '000003_000001', instance=False)  # incomplete: skipped
    data_dir = tmp_path_factory.mktemp('tfds')
    b = ip.img2img_builder('cityscapes_fine', data_dir)
    b, warnings = _prepare(b, root)
    return b, frames, warnings


def test_cityscapes_builder_decodes_exactly(cityscapes):
    b, frames, warnings = cityscapes
    assert set(b.info.splits) == {'train', 'val'}
    assert b.incomplete_frames == {'train': ['bremen_000003_000001'], 'val': []}
    msg = [w for w in warnings if 'missing a file' in w]
    assert len(msg) == 1 and 'skipped 1 frame' in msg[0] and 'no instance' in msg[0]
    for split, want in frames.items():
        got = _by_name(b, split)
        assert sorted(got) == sorted(want)
        for key, f in want.items():
            np.testing.assert_array_equal(got[key]['label'][..., 0], f['label'])
            assert got[key]['instance'].max() == f['instance'].max() > 255
            np.testing.assert_array_equal(got[key]['instance'], f['instance'])
            np.testing.assert_array_equal(got[key]['image'], f['image'])


def test_cityscapes_stream(cityscapes):
    b, frames, _ = cityscapes
    source = ip.load_img2img_source(b, 'train')
    assert set(source.keys) == {'label', 'instance', 'image'}
    # scale_width 16 -> 32 wide (NEAREST for the maps, BICUBIC for the photo), flipped or not
    opt = ip.Preprocess('scale_width', load_size=32, crop_size=32)
    with ip.CityscapesStream(source, global_batch=2, seed=0, preprocess=opt, process_index=0,
                             process_count=1) as it:
        batch = it.batch_at(0)
        pos, idx = it.order(0)
        flips = [ip.draw_params(opt, (16, 8), u).flip for u in it.draws(pos, 0)]
    names = [source.ds[int(i)]['name'].decode() for i in idx]
    assert batch['label'].shape == batch['instance'].shape == (2, 16, 32)
    for j, (name, flip) in enumerate(zip(names, flips)):
        f = frames['train'][name]

        def ref(im, method):
            im = im.resize((32, 16), method)
            return np.asarray(im.transpose(Image.FLIP_LEFT_RIGHT) if flip else im)
        label = ref(Image.fromarray(f['label']), Image.NEAREST).astype(np.int32)
        label[label == 255] = 35
        np.testing.assert_array_equal(batch['label'][j], label)
        np.testing.assert_array_equal(batch['instance'][j],
                                      ref(Image.fromarray(f['instance'].astype(np.int32)), Image.NEAREST))
        want = (np.asarray(ref(Image.fromarray(f['image']), Image.BICUBIC), np.float32) / 255 - 0.5) / 0.5
        np.testing.assert_array_equal(batch['image'][j], want.astype(np.float32))
    assert batch['instance'].max() > 255 and (batch['label'] == 35).any()


def test_tfds_catalog_cycle_gan_by_name(tmp_path):
    """TFDS's own cycle_gan/<pair> (mocked: its examples made by tfds' testing tools) as an unpaired
    source; unprepared, the error says how to prepare it without this pipeline downloading."""
    with pytest.raises(FileNotFoundError, match=r'never downloads.*tfds build cycle_gan/horse2zebra'):
        ip.load_img2img_source('cycle_gan/horse2zebra', 'train', data_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=5):
        source = ip.load_img2img_source('cycle_gan/horse2zebra', 'train', data_dir=str(tmp_path))
        assert isinstance(source, ip.UnpairedSource) and len(source.a) == len(source.b) == 5
        image = source.a.get([0])['image'][0]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
        assert len(ip.load_img2img_source('cycle_gan/horse2zebra', 'testB', data_dir=str(tmp_path))) == 5


def test_cityscapes_train_ids():
    """labelIds -> trainIds as cityscapesScripts: road 7 -> 0, sky 23 -> 10, bicycle 33 -> 18, and the
    classes outside the 19 evaluated ones (unlabeled 0, parking 9, caravan 29) ignored as 255."""
    ids = np.array([[7, 23, 33], [0, 9, 29]], np.uint8)
    np.testing.assert_array_equal(ib.cityscapes_train_ids(ids), [[0, 10, 18], [255, 255, 255]])
    assert sorted(set(ib.CITYSCAPES_TRAIN_IDS.tolist()) - {255}) == list(range(ib.CITYSCAPES_EVAL_CLASSES))
    with pytest.raises(ValueError, match='label ids'):
        ib.cityscapes_train_ids(np.array([-1, 300]))
