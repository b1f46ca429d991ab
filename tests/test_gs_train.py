"""The GAN Slimming stages on the real trainer, tiny: a teacher run (CycleGAN on the procedural
recolor task), then slim (GS-32 online, GS-8 from a teacher-output cache), then finetune."""
import json
import os
import shutil

import jax
import numpy as np
import pytest

from anycost_jax import modeldir
from anycost_jax.models.img2img import gs


def _teacher(tmp_path):
    from anycost_jax.train import trainer
    from tests.test_img2img_train import _tiny_config
    c = _tiny_config('cycle_gan', num_steps=1, dataset='shapes_img2img/recolor')
    trainer.train_and_evaluate(c, str(tmp_path / 'teacher'))
    return str(tmp_path / 'teacher')


def _config(teacher, method='slim', **kw):
    from anycost_jax.train import gan_slimming
    c = gan_slimming.base_config(method)
    c.dataset, c.teacher, c.resolution = 'shapes_img2img/recolor', teacher, 16
    c.batch_size, c.train_examples, c.test_examples, c.num_steps, c.n_epochs = 8, 16, 8, 1, 2
    c.log_every, c.sample_every, c.checkpoint_every, c.n_samples, c.eval_batch_size = 1, 1, 1, 2, 8
    c.rho, c.pool_size = 0.01, 4
    c.update(kw)
    return c


@pytest.mark.slow
def test_slim_cache_and_finetune_stages_end_to_end(tmp_path):
    from anycost_jax.train import gan_slimming, trainer
    teacher = _teacher(tmp_path)
    # GS-32, online teacher: one step, then the export (dense, extracted, D)
    trainer.train_and_evaluate(_config(teacher), str(tmp_path / 'slim'))
    gen, v = modeldir.load(str(tmp_path / 'slim' / 'generator'))
    sub, sv = modeldir.load(str(tmp_path / 'slim' / 'extracted'))
    assert isinstance(gen, gs.GSGenerator) and isinstance(sub, gs.GSGenerator)
    info = json.load(open(tmp_path / 'slim' / 'extracted.json'))
    assert tuple(info['widths']) == sub.widths == gs.live_widths(gen, v['params']) == gen.full_widths
    assert info['macs'] == info['dense_macs']  # one step of rho 0.01 zeroes no gamma (they start at 1)
    # a pruned network to fine-tune: some gammas zeroed by hand, block 1 entirely
    p = jax.tree.map(np.array, v['params'])
    p['stem_norm']['scale'][0] = p['up1_norm']['scale'][1:3] = p['block1']['norm1']['scale'][:] = 0
    sub, sv = gs.extract(gen, {'params': p})
    assert sub.widths == (3, 8, 16, 16, 0, 6, 4)
    modeldir.save(str(tmp_path / 'pruned' / 'extracted'), sub, sv)
    shutil.copytree(tmp_path / 'slim' / 'discriminator', tmp_path / 'pruned' / 'discriminator')  # its trained D
    # GS-8 from a teacher-output cache
    cache = str(tmp_path / 'cache.npz')
    gan_slimming.cache_teacher_outputs(_config(teacher), cache)
    trainer.train_and_evaluate(_config(teacher, quant_bits=8, teacher_cache=cache, rho=0.), str(tmp_path / 'gs8'))
    q, _ = modeldir.load(str(tmp_path / 'gs8' / 'generator'))
    assert q.quant_bits == 8
    with pytest.raises(ValueError, match='does not match the dataset'):
        trainer.train_and_evaluate(_config(teacher, teacher_cache=cache, train_examples=24), str(tmp_path / 'bad'))
    # fine-tuning the extracted network, keeping the best by LPIPS to the teacher
    trainer.train_and_evaluate(_config(teacher, 'finetune', pretrained=str(tmp_path / 'pruned'), eval_every=1),
                               str(tmp_path / 'ft'))
    best, _ = modeldir.load(str(tmp_path / 'ft' / 'best'))
    assert best.widths == sub.widths
    assert json.load(open(tmp_path / 'ft' / 'best.json'))['measure'] == 'eval/teacher/lpips'


def test_config_errors(tmp_path):
    from anycost_jax.train import gan_slimming
    with pytest.raises(ValueError, match='config.teacher is empty'):
        gan_slimming.check(_config(''), str(tmp_path))
    with pytest.raises(ValueError, match='rho=-1.0 < 0'):
        gan_slimming.check(_config('x', rho=-1.), str(tmp_path))
    with pytest.raises(ValueError, match='40 bits is not supported'):
        gan_slimming.check(_config('x', quant_bits=40), str(tmp_path))
    with pytest.raises(ValueError, match="the gan_slimming family has"):
        gan_slimming.base_config('prune')


@pytest.mark.slow
def test_slim_from_the_upstreams_dense_files(tmp_path):
    """The upstream's dense netG / netD files (the parity fixtures: ngf 4, 9 blocks) as teacher and D, GS-8, one
    step online; the stage starts from the file's network exactly."""
    from anycost_jax.convert import gs as gs_convert
    from anycost_jax.train import gan_slimming, trainer
    fix = os.path.join(os.path.dirname(__file__), 'fixtures')
    c = _config(os.path.join(fix, 'gs_G.pth'), teacher_format='gs', discriminator=os.path.join(fix, 'gs_D.pth'),
                resolution=32, quant_bits=8)
    teacher, t_vars = gan_slimming.load_teacher(c)
    ref, ref_vars = gs_convert.load_generator(os.path.join(fix, 'gs_G.pth'))
    jax.tree.map(np.testing.assert_array_equal, t_vars, ref_vars)
    trainer.train_and_evaluate(c, str(tmp_path / 'gs8'))
    gen, _ = modeldir.load(str(tmp_path / 'gs8' / 'generator'))
    assert gen.quant_bits == 8 and gen.n_blocks == 9 and gen.ngf == 4
    with pytest.raises(ValueError, match='extracted'):
        gan_slimming.load_teacher(_config(os.path.join(fix, 'gs_sub.pth'), teacher_format='gs'))
