"""The family-agnostic elastic helpers: width checks and masks, config strings, per-layer choice
sampling, slicing to a smaller module's shapes, channel permutations; and Anycost's labels, grid
and noise shapes built on them."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anycost_jax import elastic
from anycost_jax.elastic import core
from anycost_jax.models import Generator

GEN = Generator(16, style_dim=16, n_mlp=1, channel_multiplier=1 / 64)  # widths 64, 64, 32, 32, 16, 16


def test_check_widths_and_masks():
    assert core.check_widths([2, 3.0], [4, 3]) == (2, 3)
    with pytest.raises(ValueError, match='convs has 1 entries, expected 2: one per conv'):
        core.check_widths([2], [4, 3], 'convs', 'one per conv')
    with pytest.raises(ValueError, match=r'channels\[1\]=4 is invalid'):
        core.check_widths([2, 4], [4, 3])
    masks = core.masks_from_widths(jnp.array([[1, 3], [2, 0]]), [2, 3])
    assert masks[0].tolist() == [[1, 0], [1, 1]] and masks[1].tolist() == [[1, 1, 1], [0, 0, 0]]


def test_config_strings_round_trip():
    assert core.parse_config('16_16_32_16') == (16, 16, 32, 16)
    assert core.format_config((16, 16, 32, 16)) == '16_16_32_16'
    assert core.parse_config(core.format_config([8])) == (8,)
    for bad in ('', '16__32', '16_x', '16_0', '16,32', '-4'):
        with pytest.raises(ValueError, match='positive integers'):
            core.parse_config(bad)
    with pytest.raises(ValueError, match='at least one width'):
        core.format_config([])
    with pytest.raises(ValueError, match='positive integer'):
        core.format_config([16, 0])


def test_sample_choices_draws_every_candidate_and_traces_once():
    choices = [[8, 16], [4], [2, 4, 6]]
    table, counts = core.choice_table(choices)
    assert table.tolist() == [[8, 16, 0], [4, 0, 0], [2, 4, 6]] and counts.tolist() == [2, 1, 3]
    draw = jax.jit(lambda k: core.sample_choices(k, choices))
    got = np.stack([np.asarray(draw(jax.random.key(i))) for i in range(60)])
    assert got.dtype == np.int32 and got.shape == (60, 3)
    for l, c in enumerate(choices):
        assert set(got[:, l]) == set(c)
    assert draw._cache_size() == 1
    with pytest.raises(ValueError, match='empty: \\[1\\]'):
        core.choice_table([[1], []])


def test_slice_to_shapes_takes_prefixes():
    tree = {'a': {'k': np.arange(12).reshape(3, 4)}, 'b': np.arange(5), 'dropped': np.zeros(2)}
    shapes = {'a': {'k': jax.ShapeDtypeStruct((2, 3), jnp.int32)}, 'b': jax.ShapeDtypeStruct((2,), jnp.int32)}
    out = core.slice_to_shapes(tree, shapes)
    assert out['a']['k'].tolist() == [[0, 1, 2], [4, 5, 6]] and out['b'].tolist() == [0, 1] and 'dropped' not in out
    with pytest.raises(ValueError, match=r'b: cannot cut shape \(6,\) out of \(5,\)'):
        core.slice_to_shapes(tree, {'b': jax.ShapeDtypeStruct((6,), jnp.int32)})


def test_channel_permutations():
    x = np.arange(24).reshape(2, 3, 4)
    idx = np.array([3, 1, 0, 2])
    np.testing.assert_array_equal(core.permute_axis(x, idx, -1), x[..., idx])
    np.testing.assert_array_equal(core.permute_axis(x, np.array([2, 0, 1]), 1), x[:, [2, 0, 1]])
    assert isinstance(core.permute_axis(jnp.asarray(x), idx, 2), jax.Array)
    assert core.importance_order([1., 3., 1., 2.]).tolist() == [1, 3, 0, 2]  # ties keep their order
    kernel = np.zeros((3, 3, 2, 4), np.float32)
    kernel[..., 0], kernel[..., 1], kernel[0, 0, 0, 2], kernel[..., 3] = 1, -2, 5, 0.5
    assert core.l1_order(kernel).tolist() == [1, 0, 3, 2]  # |W| summed: 18, 36, 5, 9
    assert core.l1_order(kernel, k=2).tolist() == [1, 0]
    assert core.l1_order(np.moveaxis(kernel, -1, 0), 2, out_axis=0).tolist() == [1, 0]
    with pytest.raises(ValueError, match='k=5'):
        core.l1_order(kernel, 5)
    assert core.nonzero_indices([0., -0.5, 0., 2.]).tolist() == [1, 3]
    assert core.nonzero_indices([0.01, -0.5, 0.], threshold=0.1).tolist() == [1]
    with pytest.raises(ValueError, match='scale vector'):
        core.nonzero_indices(np.zeros((2, 2)))


def test_anycost_labels_and_uniform_grid():
    assert elastic.label(0.5, 256) == '0.5x@256' and elastic.label(None, 16) == '1.0x@16'
    assert elastic.label((8, 8), 8) == 'flexible@8' and elastic.label(np.float32(0.25), 4) == '0.25x@4'
    assert elastic.uniform_grid(GEN) == [[(r, 16), (r, 8), (r, 4)] for r in (1.0, 0.75, 0.5, 0.25)]
    assert elastic.uniform_grid(GEN, (0.5,), (8, 16)) == [[(0.5, 8), (0.5, 16)]]
    with pytest.raises(ValueError, match='channel_ratio=0.3'):
        elastic.uniform_grid(GEN, (0.3,))
    with pytest.raises(ValueError, match='target_res=32'):
        elastic.uniform_grid(GEN, (0.5,), (32,))


def test_generator_noise_shapes_and_target_res():
    assert GEN.noise_shapes() == [(4, 4), (8, 8), (8, 8), (16, 16), (16, 16)]
    assert GEN.clone(output_res=8).noise_shapes() == [(4, 4), (8, 8), (8, 8)]
    assert GEN.check_target_res(None) == 16 and GEN.check_target_res(8) == 8
    with pytest.raises(ValueError, match='target_res=32'):
        GEN.check_target_res(32)


def test_unique_labels_keep_the_first_and_number_the_repeats():
    assert core.unique_labels(['a', 'b', 'a', 'a', 'a#2']) == ['a', 'b', 'a#2', 'a#3', 'a#2#2']
    assert core.unique_labels([]) == []


def test_export_module_cuts_any_module_to_its_smaller_twin():
    import flax.linen as nn

    class Net(nn.Module):  # not a generator: two dense layers whose width is a field
        width: int

        @nn.compact
        def __call__(self, x):
            self.variable('stats', 'scale', lambda: jnp.float32(2.))
            h = nn.relu(nn.Dense(self.width, name='hidden')(x))
            return nn.Dense(3, name='out')(h)

    x = jnp.ones((1, 4))
    full = Net(8)
    v = full.init(jax.random.key(0), x)
    small = core.export_module(Net(5), {'params': v['params']} | {'stats': {'scale': np.float32(3.)}}, x)
    assert small['params']['hidden']['kernel'].shape == (4, 5) and small['params']['out']['kernel'].shape == (5, 3)
    hidden = np.asarray(v['params']['hidden']['kernel'])
    np.testing.assert_array_equal(small['params']['hidden']['kernel'], hidden[:, :5])
    # the sliced tree runs in the smaller module
    assert Net(5).apply({'params': small['params'], 'stats': small['stats']}, x).shape == (1, 3)
    assert small['stats']['scale'] == 3.  # collections are taken as given, not re-initialized
