"""Per-device training steps on 8 simulated devices: one compiled program serves every sampled
sub-network and resolution. (Every stage end to end, with equal replicas: test_trainer.py.)"""
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from anycost_jax import elastic
from anycost_jax.models import Generator
from anycost_jax.models.discriminator import Discriminator, DiscriminatorMultiRes
from anycost_jax.train import anycost_steps as st

RES = 16
GEN = Generator(RES, style_dim=16, n_mlp=1, channel_multiplier=1 / 64)  # widths 64, 64, 32, 32, 16, 16


def make(cfg: st.StepConfig, multires: bool):
    mesh = jax.make_mesh((jax.device_count(),), (st.AXIS,))
    disc = (DiscriminatorMultiRes(RES, n_res=2, modulate=cfg.conditioned_d, channel_multiplier=1 / 64)
            if multires else Discriminator(RES, channel_multiplier=1 / 64))
    g_vars = GEN.init_variables(jax.random.key(0))
    d_vars = disc.init_variables(jax.random.key(1))
    g_tx, d_tx = st.adam(0.002), st.adam(0.002)
    state = st.create_state(jax.random.key(2), g_vars, d_vars, g_tx, d_tx)
    teacher = GEN if cfg.distill_weight > 0 else None
    steps = st.Steps(mesh, GEN, disc, cfg, g_tx, d_tx, teacher=teacher)
    return steps.replicate(state), steps, steps.replicate(g_vars['params'])


def reals(batch=8, n_res=2, seed=0):
    x = jax.random.uniform(jax.random.key(seed), (batch, RES, RES, 3), minval=-1, maxval=1)
    return tuple(jax.image.resize(x, (batch, RES >> i, RES >> i, 3), 'linear') for i in range(n_res))


STAGES = {
    'stylegan2': (st.StepConfig(pl_weight=2., mixing_prob=0.9), False),
    'multires': (st.StepConfig(n_res=2, n_sampled_res=1, distill_weight=2., use_lpips=False), True),
    'anycost': (st.StepConfig(n_res=2, n_sampled_res=1, distill_weight=2., use_lpips=False,
                              channel_mode='sandwich', conditioned_d=True, divided_by=4), True),
}


@pytest.mark.slow
def test_one_compile_for_every_sampled_subnetwork():
    cfg, multires = STAGES['anycost']
    state, steps, teacher = make(cfg, multires)
    progs = steps.programs()
    for i in range(4):  # new z, widths, resolutions and noise every step, same programs
        batch = steps.shard_batch(reals(n_res=2, seed=i))
        state, _ = progs['d_step'](state, batch)
        state, _ = progs['d_reg_step'](state, batch)  # R1 at a resolution drawn per step
        state, _ = progs['g_step'](state, batch, teacher)
    assert dict(steps.traces) == {'d_step': 1, 'd_reg_step': 1, 'g_step': 1}, steps.traces
    assert int(state.step) == 4


def test_one_subnetwork_per_minibatch_stddev_group():
    # The original draws one sub-network per GPU of 4 images: here, per D statistics group of 4.
    cfg, multires = STAGES['anycost']
    _, steps, _ = make(cfg, multires)
    draws = [steps.subnetworks(jax.random.key(k), 16) for k in range(8)]
    groups = set()
    for widths, code in draws:
        assert widths.shape == (16, len(GEN.full_channels())) and code.shape == (16, elastic.arch_code_length(RES))
        # D groups samples g, g + 4, g + 8, g + 12 (the original's view(group, -1)): one architecture each
        for g in range(4):
            assert len({tuple(np.asarray(widths[i])) for i in range(g, 16, 4)}) == 1
            assert len({tuple(np.asarray(code[i])) for i in range(g, 16, 4)}) == 1
        groups.update(tuple(np.asarray(widths[g])) for g in range(4))
    assert len(groups) > 1
    # 4 images (or fewer) on a device: a single sub-network, as one GPU of the original
    widths, _ = steps.subnetworks(jax.random.key(0), 4)
    assert len({tuple(np.asarray(w)) for w in widths}) == 1
    assert steps.subnetworks(jax.random.key(0), 4)[0].shape == (4, len(GEN.full_channels()))


@pytest.mark.slow
def test_per_sample_masks_equal_each_sliced_subgenerator():
    # A batch whose samples run different sub-networks (the masked training path) gives, sample
    # by sample, the image of that sub-network's sliced generator.
    v = GEN.init_variables(jax.random.key(0))
    z = jax.random.normal(jax.random.key(4), (4, 16))
    full = GEN.full_channels()
    configs = [elastic.uniform_channels(RES, r, GEN.base_channels(), GEN.channel_max) for r in (0.25, 1.0, 0.5, 0.75)]
    masked = GEN.apply(v, z, channel_masks=jnp.asarray(configs, jnp.int32), noise_mode='const')
    for i, c in enumerate(configs):
        sliced = GEN.apply(v, z[i:i + 1], channels=c, noise_mode='const')
        np.testing.assert_allclose(masked[i:i + 1], sliced, rtol=1e-5, atol=1e-5)
    assert len({tuple(c) for c in configs}) == 4 and configs[1] == full


@pytest.mark.slow
def test_regularizers_start_at_their_interval_and_ema_is_updated_once_per_iteration():
    cfg = st.StepConfig(pl_weight=2., g_reg_every=2, d_reg_every=4, ema_beta=0.5)
    assert [i for i in range(8) if cfg.r1_due(i)] == [3, 7]  # the original counts iterations from 1
    assert [i for i in range(8) if cfg.pl_due(i)] == [1, 3, 5, 7]
    assert not any(st.StepConfig(pl_weight=0.).pl_due(i) for i in range(8))
    state, steps, _ = make(cfg, False)
    progs, batch = steps.programs(), steps.shard_batch(reals(n_res=1))
    leaf = lambda tree: np.asarray(jax.tree.leaves(tree)[0])

    state, _ = progs['g_step'](state, batch, None)  # iteration 0: no path length after it
    np.testing.assert_allclose(leaf(state.ema_params), 0.5 * leaf(GEN.init_variables(jax.random.key(0))['params'])
                               + 0.5 * leaf(state.g_params), rtol=1e-6)
    ema0 = leaf(state.ema_params)
    state, _ = progs['g_step'](state, batch, None)  # iteration 1: path length follows, the EMA waits for it
    np.testing.assert_array_equal(leaf(state.ema_params), ema0)
    state, _ = progs['g_reg_step'](state, batch)
    np.testing.assert_allclose(leaf(state.ema_params), 0.5 * ema0 + 0.5 * leaf(state.g_params), rtol=1e-6)


def test_device_batch_must_fill_stddev_groups():
    from anycost_jax.train import anycost
    for ok in (4, 8, 32):
        anycost.check_device_batch(ok)
    anycost.check_device_batch(2, allow_small=True)
    with pytest.raises(ValueError, match='allow_small_stddev_group'):
        anycost.check_device_batch(2)
    with pytest.raises(ValueError, match='6 images per device.*multiple of 4'):
        anycost.check_device_batch(6, allow_small=True)


def test_step_config_validation():
    with pytest.raises(ValueError, match='n_sampled_res=3'):
        st.StepConfig(n_res=2, n_sampled_res=3)
    with pytest.raises(ValueError, match="channel_mode='all'"):
        st.StepConfig(channel_mode='all')
    with pytest.raises(ValueError, match='conditioned_d'):
        st.StepConfig(conditioned_d=True)
    assert st.ema_beta(32, 10) == pytest.approx(0.5 ** (32 / 10000))


def _bf16_ops(fn, *args) -> int:
    """How many convolutions / matmuls of ``fn``'s program take bfloat16 operands."""
    jaxpr = jax.make_jaxpr(fn)(*args)
    prims = ('conv_general_dilated', 'dot_general')

    def count(jx):
        n = 0
        for eqn in jx.eqns:
            if eqn.primitive.name in prims and any(getattr(v.aval, 'dtype', None) == jnp.bfloat16 for v in eqn.invars):
                n += 1
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                n += count(sub)
        return n
    return count(jaxpr.jaxpr)


@pytest.mark.slow
def test_bf16_blocks_compute_in_bf16_and_stay_close():
    z = jax.random.normal(jax.random.key(3), (4, 16))
    v = GEN.init_variables(jax.random.key(0))
    fast = GEN.clone(bf16_from_res=RES)
    ref, out = GEN.apply(v, z), fast.apply(v, z)
    assert out.dtype == jnp.float32
    assert 0 < float(jnp.abs(out - ref).max() / jnp.abs(ref).max()) < 0.05  # bf16 rounding, nothing worse
    assert _bf16_ops(lambda z: GEN.apply(v, z), z) == 0
    assert _bf16_ops(lambda z: fast.apply(v, z), z) >= 2  # the two convs of the 16x16 block
    # Below the threshold nothing changes.
    np.testing.assert_array_equal(fast.apply(v, z, target_res=RES // 2), GEN.apply(v, z, target_res=RES // 2))

    disc = DiscriminatorMultiRes(RES, n_res=2, modulate=True, channel_multiplier=1 / 64)
    dv = disc.init_variables(jax.random.key(1))
    arch = elastic.arch_code(jnp.zeros(elastic.num_elastic_layers(RES), jnp.int32))
    fast_d = disc.clone(bf16_from_res=RES)
    logits = fast_d.apply(dv, ref, arch)
    assert logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, disc.apply(dv, ref, arch), rtol=0.05, atol=0.05)
    assert _bf16_ops(lambda x: fast_d.apply(dv, x, arch), ref) > 0
    # R1's gradient with respect to the reals is float32.
    assert jax.grad(lambda x: fast_d.apply(dv, x, arch).sum())(ref).dtype == jnp.float32


@pytest.mark.slow
def test_bf16_training_step_keeps_float32_state():
    cfg, _ = STAGES['anycost']
    mesh = jax.make_mesh((jax.device_count(),), (st.AXIS,))
    gen = GEN.clone(bf16_from_res=RES)
    disc = DiscriminatorMultiRes(RES, n_res=2, modulate=True, channel_multiplier=1 / 64, bf16_from_res=RES)
    g_vars, d_vars = GEN.init_variables(jax.random.key(0)), disc.init_variables(jax.random.key(1))
    tx = st.adam(0.002)
    steps = st.Steps(mesh, gen, disc, cfg, tx, tx, teacher=gen)
    state = steps.replicate(st.create_state(jax.random.key(2), g_vars, d_vars, tx, tx))
    progs, batch = steps.programs(), steps.shard_batch(reals(n_res=2))
    state, d_metrics = progs['d_step'](state, batch)
    state, r1_metrics = progs['d_reg_step'](state, batch)
    state, g_metrics = progs['g_step'](state, batch, steps.replicate(g_vars['params']))
    for m in (d_metrics, r1_metrics, g_metrics):
        for k, x in m.items():
            assert x.dtype == jnp.float32 and np.isfinite(np.asarray(x)).all(), k
    assert {x.dtype for x in jax.tree.leaves((state.g_params, state.d_params, state.ema_params, state.g_opt_state,
                                               state.d_opt_state)) if hasattr(x, 'dtype') and x.ndim} == {np.dtype('float32')}
