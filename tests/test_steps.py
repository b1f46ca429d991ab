"""Per-device training steps on 8 simulated devices: one compiled program serves every sampled
sub-network and resolution. (Every stage end to end, with equal replicas: test_trainer.py.)"""
import jax
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
