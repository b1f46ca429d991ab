"""The CRD family (anycost_jax.train.crd) end to end on tiny procedural configs: phases, exact
resume, one compilation per step program, exports, and errors that name the fix."""
import os

import jax
import numpy as np
import pytest

from anycost_jax import convert
from anycost_jax.train import crd, trainer
from configs import edges2shoes, horse2zebra, shapes_img2img


def _tiny(task='recolor', **kw):
    c = shapes_img2img.get_config(f'crd_{task}')
    c.ngf, c.student_ngf, c.n_blocks, c.ndf = 8, 4, 3, 8
    # 8 test devices (conftest): one image each; 2 steps per epoch
    c.train_examples, c.test_examples, c.batch_size, c.eval_batch_size, c.n_samples = 16, 8, 8, 8, 2
    c.crd_patch = 8
    if task == 'recolor':  # 2 steps per epoch: teacher, teacher, (snapshot) student, student, ...
        c.crd_every, c.n_epochs, c.n_epochs_decay, c.teacher_measure = 1, 1, 1, 'real/l1'
    c.num_steps, c.log_every, c.sample_every, c.checkpoint_every = 8, 2, 100, 100
    for k, v in kw.items():
        c[k] = v
    return c


def _count_programs(monkeypatch):
    made = []
    original = crd.CRDSteps.programs

    def programs(self):
        made.append(original(self))
        return made[-1]
    monkeypatch.setattr(crd.CRDSteps, 'programs', programs)
    return made


def _leaves(tree):
    def host(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(jax.device_get(x))
    return [host(x) for x in jax.tree.leaves(tree)]


@pytest.mark.slow
def test_cycle_gan_crd_phases_resume_exactly_and_export(tmp_path, monkeypatch):
    made = _count_programs(monkeypatch)
    straight = trainer.train_and_evaluate(_tiny(), str(tmp_path / 'a'))
    assert made[0]['teacher'].traces == 1 and made[0]['student'].traces == 1  # 2 cycles, one compilation each
    assert int(straight.teacher.step) == 4 and np.isfinite(float(straight.best_score))
    trainer.train_and_evaluate(_tiny(num_steps=3), str(tmp_path / 'b'))  # stops inside a student phase
    resumed = trainer.train_and_evaluate(_tiny(), str(tmp_path / 'b'))
    for x, y in zip(_leaves((straight.s_params, straight.teacher, straight.best_params, straight.best_score)),
                    _leaves((resumed.s_params, resumed.teacher, resumed.best_params, resumed.best_score))):
        np.testing.assert_array_equal(x, y)
    for part in ('generator', 'teacher', 'teacher_best', 'discriminator'):
        assert os.path.isdir(tmp_path / 'a' / part), part
    gen, variables = convert.load_img2img_generator(str(tmp_path / 'a' / 'generator'))
    x = np.zeros((1, 32, 32, 3), np.float32)
    assert gen.apply(variables, x).shape == (1, 32, 32, 3) and gen.ngf == 4


@pytest.mark.slow
def test_pix2pix_crd_step(tmp_path, monkeypatch):
    made = _count_programs(monkeypatch)
    state = trainer.train_and_evaluate(_tiny('labels2image', num_steps=2), str(tmp_path / 'a'))
    assert made[0]['step'].traces == 1 and made[0]['student'].traces == 0
    assert int(state.step) == 2 and int(state.teacher.step) == 2
    assert os.path.isdir(tmp_path / 'a' / 'generator') and os.path.isdir(tmp_path / 'a' / 'teacher')


@pytest.mark.parametrize('kw,match', [
    (dict(student_ngf=16), 'wider than its teacher'),
    (dict(crd_patch=64), 'larger than the 32x32'),
    (dict(crd_every=3), 'must divide'),
    (dict(teacher_measure='teacher/lpips'), 'teacher_measure'),
    (dict(student_netG='unet'), 'mobile_resnet'),
])
def test_config_errors_name_the_fix(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        crd.check(_tiny(**kw), str(tmp_path))


def test_pix2pix_student_has_no_gan_term(tmp_path):
    with pytest.raises(ValueError, match='no adversarial term'):
        crd.check(_tiny('labels2image', lambda_student_gan=1.), str(tmp_path))


def test_upstream_configs():
    h = horse2zebra.get_config('crd')
    assert (h.family, h.method, h.netG, h.ngf, h.student_ngf, h.n_dis, h.crd_every) == \
        ('crd', 'cycle_gan', 'mobile_resnet', 64, 16, 4, 10)
    assert (h.lambda_row, h.lambda_style, h.lambda_feature, h.lambda_student_gan, h.gan_mode) == \
        (25., 1e4, 1e1, 1., 'lsgan')
    assert h.num_steps == 20 * 5 * 10 * 1334 and h.teacher_measure == 'fid'
    e = edges2shoes.get_config('crd')
    assert (e.method, e.batch_size, e.lambda_row, e.lambda_style, e.lambda_student_gan, e.gan_mode, e.ndf) == \
        ('pix2pix', 4, 2.5, 2e4, 0., 'hinge', 128)
    u = edges2shoes.get_config('crd_unet')
    assert (u.netG, u.student_netG, u.norm) == ('unet', 'unet', 'batch')


def test_student_is_the_papers_size():
    """mobile_resnet_9blocks of ngf 16: 1.41G MACs at 256 px (torchprofile's count)."""
    import jax.numpy as jnp
    from anycost_jax import macs
    x = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    student = crd.build_student(horse2zebra.get_config('crd'))
    assert round(macs.count_macs(student, x, convention='torchprofile') / 1e9, 2) == 1.41


def test_student_schedule_follows_the_teacher_epochs():
    c = _tiny(n_epochs=2, n_epochs_decay=2, crd_every=1, lr=1.)
    sched = crd.student_schedule(c, spe=3)  # a student phase: 3 steps
    lrs = [float(sched(n)) for n in range(0, 12, 3)]
    # teacher epochs 0, 1 at lr; then linear decay: 1 - 1/3, 1 - 2/3
    np.testing.assert_allclose(lrs, [1., 1., 2 / 3, 1 / 3], rtol=1e-6)
