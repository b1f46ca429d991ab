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
from anycost_jax.train import steps as st

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


def test_devices_sample_different_subnetworks():
    # The sampling that steps use: fold the device index into the step key.
    cfg = STAGES['anycost'][0]
    keys = [jax.random.fold_in(jax.random.key(0), d) for d in range(8)]
    widths = {tuple(np.asarray(elastic.sample(k, RES, GEN.full_channels(), cfg.channel_mode,
                                               cfg.min_channel, cfg.divided_by)[0])) for k in keys}
    assert len(widths) > 1


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
