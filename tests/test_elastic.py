"""Elastic channels: masked == sliced == exported, one compile for any sampled sub-network,
sampler invariants, the architecture code, and channel sorting."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anycost_jax import elastic
from anycost_jax.elastic import sorting
from anycost_jax.models import Generator

# A tiny generator: widths 32, 32, 16, 16, 8, 8, 4, 4 (resolutions 4..32).
GEN = Generator(32, style_dim=32, n_mlp=2, channel_multiplier=1 / 128)


def perturbed_variables(gen):
    """``gen``'s initial variables with every parameter perturbed: non-zero biases and noise
    strengths, so that masking mistakes and width changes cannot hide behind zeros."""
    v = gen.init_variables(jax.random.key(0))
    # (numpy, not eager jax.random: that would compile one program per parameter shape)
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda a: np.asarray(a) + 0.2 * rng.standard_normal(a.shape, np.float32), v['params'])
    return {**v, 'params': params}


@pytest.fixture(scope='module')
def variables():
    return perturbed_variables(GEN)


@pytest.fixture(autouse=True)
def _highest_precision():
    with jax.default_matmul_precision('highest'):
        yield


Z = jax.random.normal(jax.random.key(2), (3, 32))
FULL = GEN.full_channels()


@functools.partial(jax.jit, static_argnums=0, static_argnames=('channel_ratio', 'channels', 'target_res'))
def apply(gen, variables, z, **kwargs):
    # One compiled program per static configuration: much faster than eager op-by-op dispatch.
    return gen.apply(variables, z, **kwargs)


def test_full_channels_follow_the_original_table():
    assert elastic.full_channels(1024) == [512] * 10 + [256, 256, 128, 128, 64, 64, 32, 32]
    assert elastic.uniform_channels(1024, 0.5, elastic.full_channels(1024)) == \
        [512] * 8 + [256, 256, 128, 128, 64, 64, 32, 32, 16, 16]
    assert FULL == [32, 32, 16, 16, 8, 8, 4, 4]


@pytest.mark.parametrize('ratio', elastic.RATIOS)
@pytest.mark.parametrize('target_res', [8, 16, 32])
def test_masked_sliced_and_exported_agree_uniform(variables, ratio, target_res):
    sliced = apply(GEN, variables, Z, channel_ratio=ratio, target_res=target_res)
    widths = elastic.uniform_channels(32, ratio, FULL, GEN.channel_max)
    masked = apply(GEN, variables, Z, channel_masks=jnp.array(widths), target_res=target_res)
    sub, sub_vars = elastic.export(GEN, variables, channel_ratio=ratio, target_res=target_res)
    exported = apply(sub, sub_vars, Z)
    assert sliced.shape == (3, target_res, target_res, 3)
    np.testing.assert_allclose(masked, sliced, rtol=0, atol=1e-5 * float(jnp.abs(sliced).max()))
    np.testing.assert_allclose(exported, sliced, rtol=0, atol=1e-6 * float(jnp.abs(sliced).max()))
    # The exported tree really is smaller unless the config is the full one.
    n_sub = sum(a.size for a in jax.tree.leaves(sub_vars['params']))
    n_full = sum(a.size for a in jax.tree.leaves(variables['params']))
    assert n_sub < n_full or (ratio == 1.0 and target_res == 32)


def test_masked_sliced_exported_agree_flexible(variables):
    sample = jax.jit(lambda key: elastic.sample(key, 32, FULL, 'flexible', min_channel=1))
    for seed in range(2):
        widths, _ = sample(jax.random.key(seed))
        ch = [int(c) for c in widths]
        sliced = apply(GEN, variables, Z, channels=tuple(ch))
        masked = apply(GEN, variables, Z, channel_masks=widths)
        masks = elastic.masks_from_widths(widths, FULL)
        masked_list = apply(GEN, variables, Z, channel_masks=masks)
        sub, sub_vars = elastic.export(GEN, variables, channels=tuple(ch))
        scale = float(jnp.abs(sliced).max())
        np.testing.assert_allclose(masked, sliced, atol=1e-5 * scale, rtol=0)
        # Two programs: equal up to XLA's float reassociation (bitwise under -O2, not under the
        # suite's -O0, see conftest.py).
        np.testing.assert_allclose(masked_list, masked, atol=1e-6 * scale, rtol=0)
        np.testing.assert_allclose(apply(sub, sub_vars, Z), sliced, atol=1e-6 * scale, rtol=0)


def test_sub_widths_change_the_image(variables):
    full = apply(GEN, variables, Z)
    quarter = apply(GEN, variables, Z, channel_ratio=0.25)
    assert float(jnp.abs(full - quarter).max()) > 1e-2


def test_one_compile_for_every_sampled_subnetwork(variables):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def render(v, z, key):
        widths, ratio_idx = elastic.sample(key, 32, FULL, 'sandwich', min_channel=2, divided_by=2)
        return GEN.apply(v, z, channel_masks=widths), widths, elastic.arch_code(ratio_idx)

    seen = set()
    for i in range(8):
        img, widths, code = render(variables, Z, jax.random.key(i))
        seen.add(tuple(np.asarray(widths)))
        assert img.shape == (3, 32, 32, 3) and code.shape == (4 * len(FULL),)
    assert len(seen) > 2  # several different sub-networks ran through the one program


def test_uniform_sampling_draws_the_uniform_configs():
    draws = jax.vmap(lambda k: elastic.sample(k, 1024, elastic.full_channels(1024), 'uniform'))(
        jax.random.split(jax.random.key(0), 64))
    widths, ratio_idx = map(np.asarray, draws)
    for w, r in zip(widths, ratio_idx):
        assert len(set(r)) == 1
        assert list(w) == elastic.uniform_channels(1024, elastic.RATIOS[r[0]], elastic.full_channels(1024))
    assert set(ratio_idx[:, 0]) == {0, 1, 2, 3}


@pytest.mark.parametrize('divided_by', [1, 4, 8])
def test_flexible_sampling_respects_bounds(divided_by):
    full = elastic.full_channels(1024)
    bottom = elastic.uniform_channels(1024, 0.25, full)
    keys = jax.random.split(jax.random.key(divided_by), 200)
    widths, ratio_idx = map(np.asarray, jax.vmap(
        lambda k: elastic.sample(k, 1024, full, 'flexible', min_channel=8, divided_by=divided_by))(keys))
    for w, r in zip(widths, ratio_idx):
        ratios = np.array(elastic.RATIOS)[r]
        assert (ratios * np.array(full) >= np.array(bottom)).all()  # never below the 0.25-uniform config
        expected = [int(np.ceil(min(max(int(q * f), 8), f) / divided_by) * divided_by) for q, f in zip(ratios, full)]
        assert list(w) == expected
        assert (w >= 8).all() and (w % divided_by == 0).all()
    # Every layer that admits several ratios sees more than one.
    assert all(len(set(ratio_idx[:, l])) > 1 for l in range(10, 18))


def test_sandwich_sampling_frequencies():
    full = elastic.full_channels(256, channel_multiplier=1)
    keys = jax.random.split(jax.random.key(3), 4000)
    widths, _ = jax.vmap(lambda k: elastic.sample(k, 256, full, 'sandwich'))(keys)
    widths = np.asarray(widths)
    smallest = np.array(elastic.uniform_channels(256, 0.25, full))
    p_full = (widths == np.array(full)).all(1).mean()
    p_small = (widths == smallest).all(1).mean()
    assert 0.22 < p_full < 0.29 and 0.22 < p_small < 0.29


def test_arch_code_is_one_hot_per_layer():
    ratio_idx = elastic.ratio_index([1.0, 0.25, 0.5, 0.75])
    code = np.asarray(elastic.arch_code(ratio_idx))
    assert code.tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match='channel_ratio=0.3'):
        elastic.ratio_index([0.3])


def test_sample_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode='random'"):
        elastic.sample(jax.random.key(0), 32, FULL, 'random')


def test_sorting_keeps_the_full_output_and_orders_importance(variables):
    sorted_vars = sorting.sort_channels(GEN, variables, jax.random.key(4), n_sample=2000)
    full = apply(GEN, variables, Z)
    np.testing.assert_allclose(apply(GEN, sorted_vars, Z), full, atol=1e-5 * float(jnp.abs(full).max()), rtol=0)
    # After sorting, each layer's input importance is non-increasing (recomputed on fresh latents).
    z = jax.random.normal(jax.random.key(5), (2000, 32))
    w = GEN.apply({'params': sorted_vars['params']}, z, method=Generator.style)
    for name in ['to_rgbs_2', 'convs_5', 'convs_4', 'conv1']:
        layer = sorted_vars['params'][name]
        order = sorting._input_order(layer, w)
        # Same latent distribution, different samples: the top channel stays on top.
        assert order[0] == 0, (name, order)
    # The permutation is not the identity on this random network.
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(sorted_vars['params']),
                                                        jax.tree.leaves(variables['params'])))


def test_sorting_rejects_exported_generators(variables):
    sub, sub_vars = elastic.export(GEN, variables, channel_ratio=0.5)
    with pytest.raises(ValueError, match='full generator'):
        sorting.sort_channels(sub, sub_vars, jax.random.key(0), n_sample=10)


def test_the_trainer_config_accepts_exactly_the_sampling_modes():
    from anycost_jax.train import config_lib  # jax-free, so it keeps its own copy
    assert config_lib.CHANNEL_MODES == elastic.SAMPLING_MODES
