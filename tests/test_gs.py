"""GAN Slimming against the original's outputs on random weights (tests/fixtures/make_gs_fixture.py):
the generator (dense, pruned, extracted, 8-bit quantized) and its gradients, the discriminator, the
quantizer's values and straight-through gradients, the perceptual loss, the proximal step, the two
optimizers, and the import of its checkpoint files."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anycost_jax.convert import gs as gs_convert
from anycost_jax.convert import table as table_lib
from anycost_jax.losses import slimming
from anycost_jax.models import vgg as vgg_lib
from anycost_jax.models.img2img import gs
from anycost_jax.nn import quant

HERE = os.path.join(os.path.dirname(__file__), 'fixtures')
TOL = 1e-4


@pytest.fixture(scope='module')
def expected():
    return dict(np.load(os.path.join(HERE, 'gs_expected.npz')))


def rel_err(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.ndim == 4 and ours.shape != theirs.shape:
        ours = ours.transpose(0, 3, 1, 2)
    return float(np.abs(ours - theirs).max() / (np.abs(theirs).max() + 1e-12))


def nhwc(x):
    return jnp.asarray(np.asarray(x).transpose(0, 2, 3, 1))


def load(name, **kw):
    return gs_convert.load_generator(os.path.join(HERE, name), **kw)


def torch_grads(table, grads):
    """Our gradient tree -> {torch key: array in torch's layout}."""
    return {tk: table_lib.layout(lay)[1](np.asarray(table_lib.get_path(grads, path))) for tk, path, lay in table}


@pytest.mark.parametrize('case,file,bits', [('dense', 'gs_G.pth', None), ('quant', 'gs_G.pth', 8),
                                            ('pruned', 'gs_Gpruned.pth', None)])
def test_generator_matches_original(expected, case, file, bits):
    gen, v = load(file, quant_bits=bits)
    assert gen.widths is None and gen.n_blocks == 9 and gen.ngf == 4
    assert rel_err(gen.apply(v, nhwc(expected['x'])), expected[f'{case}_y']) < TOL


@pytest.mark.parametrize('case,bits', [('dense', None), ('quant', 8)])
def test_generator_gradients_match_original(expected, case, bits):
    """Straight-through gradients through every quantized conv (and the clamp's zero outside [0, 4])."""
    gen, v = load('gs_G.pth', quant_bits=bits)
    x, probe = nhwc(expected['x']), nhwc(expected['probe'])
    grads = jax.grad(lambda p: jnp.sum(gen.apply({'params': p}, x) * probe))(v['params'])
    table = gs_convert.generator_table(gen)
    ours = torch_grads(table, {'params': grads})
    # a conv bias right before an instance norm has a gradient of exactly 0 in exact arithmetic (the norm
    # subtracts it): both sides hold rounding noise there; the head's bias is compared
    skip = {tk for tk, path, _ in table if path[-1] == 'bias' and 'norm' not in path[-2] and path[-2] != 'head'}
    for k, g in ours.items():
        if k not in skip:
            assert rel_err(g, expected[f'{case}_grad.{k}']) < TOL, k
    assert len(ours) - len(skip) == 24 + 2 * 13 + 1  # conv kernels, affine norms, the head bias


def test_extracted_subnet_matches_original_file(expected):
    """The original's extract_subnet.py output: its widths from the tensors (dim_lst checked), a zero-width
    block computing x + x."""
    gen, v = load('gs_sub.pth', dim_lst_path=os.path.join(HERE, 'gs_sub.npy'))
    assert gs.dim_lst(gen.widths) == np.load(os.path.join(HERE, 'gs_sub.npy')).tolist()
    assert gen.widths[3 + 4] == 0 and gen.zero_block == 'double'
    assert rel_err(gen.apply(v, nhwc(expected['x'])), expected['sub_y']) < TOL


def test_our_extraction_equals_the_originals(expected):
    """Ours from the pruned dense file through the permutation + export: the same tensors as the original's
    extract_subnet.py wrote (the order of the kept channels included); zero_block='double' then
    reproduces its output, ours ('identity') the pruned dense network's function in that block."""
    dense, v = load('gs_Gpruned.pth', zero_block='identity')
    sub, sv = gs.extract(dense, v, zero_block='double')
    ref, rv = load('gs_sub.pth')
    assert sub.widths == ref.widths
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), sv, rv)
    x = nhwc(expected['x'])
    assert rel_err(sub.apply(sv, x), expected['sub_y']) < TOL
    ours, ours_v = gs.extract(dense, v)
    assert ours.zero_block == 'identity'
    # block 4 contributes nothing in the pruned dense network (exactly, up to rounding: the output norm of a
    # constant map divides float noise by sqrt(eps), ~1e-4 here): identity is its function, not x + x
    h_dense = dense.apply(v, x, capture_intermediates=lambda m, _: m.name in ('block3', 'block4'))
    outs = h_dense[1]['intermediates']
    np.testing.assert_allclose(outs['block4']['__call__'][0], outs['block3']['__call__'][0], atol=1e-3)


def test_discriminator_matches_original(expected):
    disc, v = gs_convert.load_discriminator(os.path.join(HERE, 'gs_D.pth'))
    x = nhwc(expected['d_x'])
    y = disc.apply(v, x)
    assert y.shape == expected['d_y'].shape and rel_err(y, expected['d_y']) < TOL


def test_quantizer_values_and_straight_through_gradients(expected):
    x, r = jnp.asarray(expected['q_in']), jnp.asarray(expected['q_probe'])
    for tag, signed, mx in (('signed', True, 1.5), ('unsigned', False, 4.0)):
        y, g = jax.value_and_grad(lambda a: jnp.sum(quant.fake_quant(a, signed, 8, mx) * r))(x)
        np.testing.assert_array_equal(quant.fake_quant(x, signed, 8, mx), expected[f'q_{tag}_y'])
        np.testing.assert_array_equal(jax.grad(lambda a: jnp.sum(quant.fake_quant(a, signed, 8, mx) * r))(x),
                                      expected[f'q_{tag}_grad'])
    # unsigned 8 bits: 4.0 is code 256 (the original's int_max); half steps round to even
    assert float(quant.fake_quant(jnp.float32(4.), False, 8, 4.)) == 4.
    assert float(quant.fake_quant(jnp.float32(1.5 / 64), False, 8, 4.)) == 2 / 64


def test_quantized_conv_matches_conv2dquant(expected):
    from anycost_jax.nn.conv import Conv2d
    conv = Conv2d(3, 4, 3, padding=1, quant_bits=8)
    v = {'params': {'kernel': jnp.asarray(expected['q_conv_w.weight'].transpose(2, 3, 1, 0)),
                    'bias': jnp.asarray(expected['q_conv_w.bias'])}}
    x = nhwc(expected['q_conv_x'])
    assert rel_err(conv.apply(v, x), expected['q_conv_y']) < TOL
    gx = jax.grad(lambda a: jnp.sum(conv.apply(v, a)))(x)
    assert rel_err(gx, expected['q_conv_grad_x']) < TOL
    assert float(jnp.abs(gx)[(x < 0) | (x > 4)].max()) == 0.  # the clamp's gradient


def test_perceptual_loss_matches_original(expected):
    variables = vgg_lib.vgg16_variables()
    a, b = nhwc(expected['p_a']), nhwc(expected['p_b'])
    (loss, (content, style)), grad = jax.value_and_grad(
        lambda t: (lambda o: (o[0], o[1:]))(slimming.image_perceptual_loss(variables, t, b)), has_aux=True)(a)
    assert rel_err(loss, expected['p_loss']) < TOL
    assert rel_err(content, expected['p_content']) < TOL
    assert rel_err(style, expected['p_style']) < TOL
    assert rel_err(grad, expected['p_grad_a']) < TOL


def test_soft_threshold(expected):
    np.testing.assert_allclose(gs.soft_threshold(jnp.asarray(expected['st_in']), 0.3), expected['st_out'], atol=1e-7)


@pytest.mark.parametrize('bits', [0, 1, 7.5, 17, 64, 'eight'])
def test_unsupported_bit_widths_are_refused(bits):
    with pytest.raises((ValueError, TypeError), match='bits|int'):
        quant.check_bits(bits)
    assert quant.check_bits(32) is None and quant.check_bits(None) is None and quant.check_bits(8) == 8


def test_negative_rho_is_refused():
    with pytest.raises(ValueError, match='rho=-0.1 < 0'):
        gs.check_rho(-0.1)
    assert gs.check_rho(0.) == 0.


def test_student_wider_than_teacher_is_refused():
    with pytest.raises(ValueError, match='never wider than its teacher'):
        gs.GSGenerator(ngf=4, n_blocks=2, widths=(4, 8, 16, 17, 16, 8, 4)).full_widths
    with pytest.raises(ValueError, match='only block inner widths may be 0'):
        gs.GSGenerator(ngf=4, n_blocks=2, widths=(0, 8, 16, 16, 16, 8, 4)).full_widths


def test_gamma_mask_selects_affine_norm_scales_only():
    gen, v = load('gs_G.pth')
    mask = gs.gamma_mask(v['params'])
    picked = sorted('/'.join(p) for p, m in table_lib_flat(mask) if m)
    assert len(picked) == 2 + 9 + 2 and all(p.endswith('scale') for p in picked)
    assert 'stem_norm/scale' in picked and 'block0/norm1/scale' in picked


def table_lib_flat(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from table_lib_flat(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def test_macs_in_the_originals_units(expected):
    """measure_model's count of the extracted network (2^20 units) and the dense CycleGAN's "52.90 G"."""
    from anycost_jax import macs
    gen, _ = load('gs_sub.pth')
    x = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    assert macs.count_macs(gen, x, convention='gan-slimming') / 2 ** 20 == float(expected['sub_macs'])
    dense = gs.GSGenerator()
    assert round(macs.binary_giga(macs.count_macs(dense, x, convention='gan-slimming')), 2) == 52.90
    assert round(macs.count_macs(dense, x) / 1e9, 1) == 56.8


def test_optimizers_match_two_original_steps(expected):
    """SGD + momentum on the gammas with the proximal step, Adam + L2 weight decay on the rest (gs.py's)."""
    from anycost_jax.train import gan_slimming
    gen, v = load('gs_G.pth')
    x, probe = nhwc(expected['x']), nhwc(expected['probe'])
    params = v['params']
    tx = gan_slimming.generator_tx(params, 1e-5, 0.1, 1e-3, 0.5)
    state = tx.init(params)
    rho = float(expected['opt_rho'])
    for _ in range(2):
        grads = jax.grad(lambda p: jnp.sum(gen.apply({'params': p}, x) * probe))(params)
        updates, state = tx.update(grads, state, params)
        params = gs.prox_gammas(jax.tree.map(lambda a, u: a + u, params, updates), rho * 0.1)
    table = gs_convert.generator_table(gen)
    before = gs_convert.generator_to_state_dict(gen, v)
    after = gs_convert.generator_to_state_dict(gen, {'params': params})
    for tk, path, _ in table:
        if path[-1] == 'bias' and 'norm' not in path[-2] and path[-2] != 'head':
            continue  # their gradients are rounding noise (see the gradient test); Adam's first steps are +-lr
        delta, ref = after[tk] - before[tk], expected[f'opt_{tk}'] - before[tk]
        assert rel_err(delta, ref) < 1e-3, tk
    assert np.count_nonzero(after['model.2.weight'] == 0) == np.count_nonzero(expected['opt_model.2.weight'] == 0)


def test_latest_checkpoint_loads_without_torch(expected):
    """gs.py's latest.pth (save_ckpt: networks, optimizer and scheduler states, loss lists): netG and netD."""
    gen, v = load('gs_latest.pth')
    assert gen.widths is None
    ref = {k[len('opt_'):]: a for k, a in expected.items() if k.startswith('opt_model.')}
    sd = gs_convert.generator_to_state_dict(gen, v)
    for k, a in ref.items():
        np.testing.assert_array_equal(sd[k], a)
    disc, dv = gs_convert.load_discriminator(os.path.join(HERE, 'gs_latest.pth'))
    assert disc.global_pool and disc.ndf == 4


def test_discriminator_gradients_match_original(expected):
    disc, v = gs_convert.load_discriminator(os.path.join(HERE, 'gs_D.pth'))
    x, probe = nhwc(expected['d_x']), jnp.asarray(expected['d_probe'])
    grads = jax.grad(lambda p: jnp.sum(disc.apply({'params': p}, x) * probe))(v['params'])
    table = gs_convert.discriminator_table(disc)
    ours = torch_grads(table, {'params': grads})
    for k, g in ours.items():
        # conv biases before an instance norm: 0 in exact arithmetic (rounding noise on both sides)
        if k.endswith('.bias') and k not in ('model.0.bias', 'model.11.bias') and \
                f'model.{int(k.split(".")[1]) + 1}.weight' in ours:
            continue
        assert rel_err(g, expected[f'd_grad.{k}']) < TOL, k
