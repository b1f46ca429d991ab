"""The mIoU's ground truth from the data pipeline (gtFine train ids at the native size, for GauGAN's
cityscapes_fine and, through gan-compression's table, pix2pix's Cityscapes split) and
``train.img2img.miou`` end to end on a prepared miniature Cityscapes, against
``eval.segmentation`` applied by hand."""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from anycost_jax.data import img2img_builders as ib
from anycost_jax.data import img2img_pipeline as ip
from anycost_jax.eval import segmentation as seg
from tests.test_drn import synthetic_drn
from tests.test_img2img_data import cityscapes, paired  # noqa: F401 -- prepared miniature datasets


def test_cityscapes_stream_gives_native_train_ids(cityscapes):  # noqa: F811
    b, frames, _ = cityscapes
    source = ip.load_img2img_source(b, 'train')
    opt = ip.Preprocess('scale_width', load_size=32, crop_size=32)
    with ip.CityscapesStream(source, global_batch=2, seed=0, preprocess=opt, process_index=0,
                             process_count=1) as it:
        ids = it.train_ids_at(0)
        names = [source.ds[int(i)]['name'].decode() for i in it.order(0)[1]]
    assert ids.shape == (2, 8, 16)  # the frames' own size: no scaling, no crop, no flip
    for j, name in enumerate(names):
        np.testing.assert_array_equal(ids[j], ib.cityscapes_train_ids(frames['train'][name]['label']))


def test_cityscapes_table_reads_train_ids(tmp_path):
    root = tmp_path / 'cityscapes'
    (root / 'gtFine/val/lindau').mkdir(parents=True)
    label_ids = np.array([[7, 8, 0], [26, 33, 9]], np.uint8)
    Image.fromarray(label_ids).save(root / 'gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png')
    Image.fromarray(np.full((2, 3), 4, np.uint8)).save(
        root / 'gtFine/val/lindau/lindau_000001_000019_gtFine_trainIds.png')
    table = tmp_path / 'val_table.txt'
    table.write_text('0 gtFine/val/lindau/lindau_000000_000019_gtFine_trainIds.png '
                     'leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png\n'
                     '1 gtFine/val/lindau/lindau_000001_000019_gtFine_trainIds.png '
                     'leftImg8bit/val/lindau/lindau_000001_000019_leftImg8bit.png\n')
    t = ib.CityscapesTable(str(table), str(root))
    # by index ('0.jpg', the pix2pix split's name) or by the photo's name; labelIds mapped when no trainIds
    a, b2 = t.train_ids(['0.jpg', 'lindau_000001_000019_leftImg8bit'])
    np.testing.assert_array_equal(a, [[0, 1, 255], [13, 18, 255]])
    np.testing.assert_array_equal(b2, np.full((2, 3), 4))
    with pytest.raises(KeyError, match='not in the Cityscapes mIoU table'):
        t.train_ids(['7.jpg'])
    with pytest.raises(FileNotFoundError, match='config.cityscapes_table'):
        ib.CityscapesTable(str(tmp_path / 'none.txt'), str(root))
    with pytest.raises(FileNotFoundError, match='config.cityscapes_dir'):
        ib.CityscapesTable(str(table), str(tmp_path / 'nowhere'))
    (table).write_text('0 gtFine/val/x/x_000009_000019_gtFine_trainIds.png p.png\n')
    with pytest.raises(FileNotFoundError, match='gtFine_trainvaltest'):
        ib.CityscapesTable(str(table), str(root)).train_ids(['0'])


class _TinyGen(nn.Module):
    """A stand-in generator: semantic input -> an image in [-1, 1]."""

    @nn.compact
    def __call__(self, x):
        return jnp.tanh(nn.Conv(3, (3, 3))(x) * 3)


def test_miou_of_a_gaugan_on_cityscapes_fine(cityscapes, tmp_path):  # noqa: F811
    from anycost_jax.train import img2img
    b, frames, _ = cityscapes
    c = img2img.base_config('gaugan')
    c.dataset, c.data_dir, c.test_split = 'cityscapes_fine', str(b.data_dir_root), 'train'
    c.preprocess, c.load_size, c.resolution = 'scale_width', 32, 32
    gen = _TinyGen()
    variables = gen.init(jax.random.key(0), jnp.zeros((1, 16, 32, c.n_classes + 1)))
    model, dvars = synthetic_drn(tmp_path)
    segmenter = seg.Segmenter(model, dvars)
    got = img2img.miou(c, gen, variables, segmenter, batch_size=1)
    assert got['n_images'] == 2
    # by hand: the generator on the evaluation stream's batches, against the frames' own train ids
    inputs, _, _, _ = img2img.fid_streams(c, 'train', 'AtoB', 1)
    with inputs:
        batches = [(img2img.generator_input(c, inputs.batch_at(s)), inputs.train_ids_at(s)) for s in range(2)]
    want = seg.miou(lambda x: gen.apply(variables, x), batches, segmenter)
    assert got['miou'] == pytest.approx(want['miou'], rel=1e-12)
    assert all(lab.shape == (1, 8, 16) for _, lab in batches)
    # the held batches a search fitness takes: the same ones, as many as asked for
    held = list(img2img.miou_batches(c, 'train', 1, n_batches=1))
    assert len(held) == 1
    np.testing.assert_array_equal(held[0][0], batches[0][0])
    np.testing.assert_array_equal(held[0][1], batches[0][1])
    fitness = seg.miou_fitness(lambda cand: (lambda x: gen.apply(variables, x)), held, segmenter)
    assert fitness([None]) == [-seg.miou(lambda x: gen.apply(variables, x), held, segmenter)['miou']]
    # a dataset without Cityscapes ground truth says what mIoU needs
    p = img2img.base_config('pix2pix')
    p.test_examples = 2
    with pytest.raises(ValueError, match='config.cityscapes_table'):
        img2img.miou(p, gen, variables, segmenter)


@pytest.mark.slow
def test_launch_evaluate_scores_an_img2img_generator(cityscapes, tmp_path):  # noqa: F811
    """launch/evaluate.py --img2img_config ... --metrics=miou on a tiny GauGAN .pth and the miniature
    cityscapes_fine; without --drn it stops first, saying where the weights come from."""
    import json
    import subprocess
    import sys
    from anycost_jax import convert
    from anycost_jax.convert import drn as drn_convert
    from anycost_jax.convert.torch_io import save_torch_file
    from anycost_jax.train import img2img
    from tests.test_drn import H
    b, _, _ = cityscapes
    overrides = dict(data_dir=str(b.data_dir_root), test_split='train', load_size=64, resolution=64, ngf=2,
                     num_upsampling_layers='normal')
    c = img2img.base_config('gaugan')
    c.spectral_G = True
    c.update(overrides)
    gen, _ = img2img.build_models(c)
    g_vars, _ = img2img.init_variables(c, jax.random.key(1))
    convert.save_img2img_generator(str(tmp_path / 'G.pth'), gen, g_vars)
    model = drn_convert.DRNSeg(channels=H.NARROW_CHANNELS)
    save_torch_file(H.random_state_dict(drn_convert.state_dict_shapes(model)), str(tmp_path / 'drn.pth'))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, 'launch/evaluate.py', '--img2img_config=configs/cityscapes.py:gaugan',
           f'--checkpoint={tmp_path / "G.pth"}', '--netG=spade', '--metrics=miou',
           f'--output={tmp_path / "out.json"}'] + [f'--img2img_config.{k}={v}' for k, v in overrides.items()]
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode != 0 and 'go.yf.io' in proc.stderr and '--drn=PATH' in proc.stderr
    assert not (tmp_path / 'out.json').exists()
    proc = subprocess.run(cmd + [f'--drn={tmp_path / "drn.pth"}'], cwd=root, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.load(open(tmp_path / 'out.json'))['results']
    assert 0 <= got['miou'] <= 100 and len(got['iou']) == 19 and 'miou' in proc.stdout


def test_evaluate_generator_refuses_before_any_work():
    from anycost_jax.train import img2img
    c = img2img.base_config('pix2pix')
    with pytest.raises(ValueError, match=r"expected some of \('fid', 'miou'\)"):
        img2img.evaluate_generator(c, None, {}, ['psnr'])
    with pytest.raises(FileNotFoundError, match=r'drn-d-105_ms_cityscapes\.pth.*--drn=PATH'):
        img2img.evaluate_generator(c, None, {}, ['fid', 'miou'])
    c.drn = '/nonexistent/drn.pth'
    with pytest.raises(FileNotFoundError, match=r"'/nonexistent/drn.pth' do not exist.*go\.yf\.io"):
        img2img.evaluate_generator(c, None, {}, ['miou'])
    c.inception = '/nonexistent/pt_inception.pth'
    with pytest.raises(FileNotFoundError, match=r'pytorch-fid/releases.*--inception=PATH'):
        img2img.evaluate_generator(c, None, {}, ['fid'])


def test_miou_of_a_pix2pix_through_the_table(paired, tmp_path):  # noqa: F811
    """pix2pix's Cityscapes split: each example found in gan-compression's table by its file name, its
    ground truth read from the Cityscapes folder (label ids mapped to train ids)."""
    from anycost_jax.train import img2img
    b, _, val, _ = paired
    root, rows, truth = tmp_path / 'cityscapes', [], {}
    (root / 'gtFine/val/c').mkdir(parents=True)
    for i, stem in enumerate(sorted(val)):
        name = os.path.basename(stem)
        ids = np.random.default_rng(i).choice(np.array([7, 8, 11, 21, 23, 26, 0], np.uint8), (6, 10))
        Image.fromarray(ids).save(root / f'gtFine/val/c/c_00000{i}_000019_gtFine_labelIds.png')
        rows.append(f'{name} gtFine/val/c/c_00000{i}_000019_gtFine_trainIds.png leftImg8bit/val/c/{name}.png')
        truth[name] = ib.cityscapes_train_ids(ids)
    (tmp_path / 'val_table.txt').write_text('\n'.join(rows) + '\n')
    c = img2img.base_config('pix2pix')
    c.dataset, c.data_dir, c.test_split = 'paired_images', str(b.data_dir_root), 'val'
    c.preprocess, c.resolution = 'none', 12
    c.cityscapes_table, c.cityscapes_dir = str(tmp_path / 'val_table.txt'), str(root)
    gen = _TinyGen()
    variables = gen.init(jax.random.key(0), jnp.zeros((1, 12, 12, 3)))
    model, dvars = synthetic_drn(tmp_path)
    segmenter = seg.Segmenter(model, dvars)
    batches = list(img2img.miou_batches(c, batch_size=1))
    inputs = img2img.fid_streams(c, 'val', 'AtoB', 1)[0]
    with inputs:
        names = [os.path.basename(inputs.names_at(s)[0]) for s in range(3)]
    assert sorted(names) == ['w', 'x', 'y']
    for (_, labels), name in zip(batches, names):
        np.testing.assert_array_equal(labels[0], truth[os.path.splitext(name)[0]])
    got = img2img.miou(c, gen, variables, segmenter)
    want = seg.miou(lambda x: gen.apply(variables, x), batches, segmenter)
    assert got['n_images'] == 3 and got['miou'] == pytest.approx(want['miou'], rel=1e-12)
