"""Consistency of sub-generators with the full generator: LPIPS / MSE at the common resolution,
the masked evaluator against sliced rendering, sample padding, and attribute agreement."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anycost_jax.eval import consistency as cons
from anycost_jax.models import Generator
from anycost_jax.render import SubConfig
from anycost_jax.nn.resize import resize_align_corners
from tests.test_elastic import perturbed_variables

GEN = Generator(16, style_dim=16, n_mlp=1, channel_multiplier=1 / 64)  # widths 64, 64, 32, 32, 16, 16


@pytest.fixture(scope='module')
def variables():
    return perturbed_variables(GEN)


def test_full_is_consistent_with_itself_and_smaller_widths_are_not(variables):
    configs = [SubConfig(channel_ratio=1.0), SubConfig(channel_ratio=0.5), SubConfig(channel_ratio=1.0, target_res=8)]
    out = cons.consistency(GEN, variables, configs, n_samples=4, batch_size=4, eval_res=16, progress=False)
    assert list(out) == ['1.0x@16', '0.5x@16', '1.0x@8']
    assert out['1.0x@16']['mse'] == 0.0  # same program, same inputs
    assert out['1.0x@16']['lpips'] == pytest.approx(0., abs=1e-9)  # VGG's two passes may round apart
    for label in ('0.5x@16', '1.0x@8'):
        assert out[label]['lpips'] > 0.01 and out[label]['mse'] > 1e-4, (label, out[label])


@functools.partial(jax.jit, static_argnames=('channels', 'target_res'))
def _apply(variables, z, channels=None, target_res=None):
    return GEN.apply(variables, z, channels=channels, target_res=target_res)


def test_mse_matches_sliced_rendering_at_the_common_resolution(variables):
    ev = cons.ConsistencyEvaluator(GEN, variables, n_samples=3, batch_size=3, eval_res=16, use_lpips=False)
    flexible = (64, 32, 32, 16, 8, 16)
    got = ev.evaluate([(None, 8), (flexible, None), (flexible[:4], 8)])
    render = functools.partial(_apply, variables, ev.z[0])
    full = resize_align_corners(jnp.clip(render(), -1, 1), 16)
    low = resize_align_corners(jnp.clip(render(target_res=8), -1, 1), 16)  # upsampled to the common 16
    flex = resize_align_corners(jnp.clip(render(channels=flexible), -1, 1), 16)
    flex8 = resize_align_corners(jnp.clip(render(channels=flexible, target_res=8), -1, 1), 16)
    for res, ref in zip(got, (low, flex, flex8)):
        assert np.isnan(res['lpips'])
        assert res['mse'] == pytest.approx(float(jnp.mean(jnp.square(ref - full))), rel=1e-4, abs=1e-7)
    assert ev.trace_counts == {16: 1, 8: 1}  # one program per resolution, widths are data


def test_samples_do_not_depend_on_the_batch_size(variables):
    configs = [((64, 32, 32, 16, 16, 8), None), ((16, 16, 8, 8, 8, 8), None)]
    a = cons.ConsistencyEvaluator(GEN, variables, n_samples=5, batch_size=2, eval_res=16, use_lpips=False)
    b = cons.ConsistencyEvaluator(GEN, variables, n_samples=5, batch_size=5, eval_res=16, use_lpips=False)
    np.testing.assert_array_equal(a.z.reshape(-1, 16)[:5], b.z.reshape(-1, 16))
    for x, y in zip(a.evaluate(configs), b.evaluate(configs)):  # 3 batches (one padded) vs 1
        assert x['mse'] == pytest.approx(y['mse'], rel=1e-5)


def test_attribute_consistency(variables):
    mean_colour = lambda img: img.mean((1, 2)) - 0.05  # noqa: E731 3 "attributes", logits [N, 3]
    configs = {'full': SubConfig(channel_ratio=1.0), 'quarter': SubConfig(channel_ratio=0.25, target_res=8)}
    out = cons.attribute_consistency(GEN, variables, mean_colour, configs, n_samples=6, batch_size=3,
                                     eval_res=16, progress=False)
    assert out['full'] == {'mean': 1.0, 'per_attribute': [1.0, 1.0, 1.0]}
    q = out['quarter']
    assert len(q['per_attribute']) == 3 and 0 <= q['mean'] <= 1
    assert q['mean'] == pytest.approx(np.mean(q['per_attribute']))
    # Every value is a fraction of the 6 samples.
    assert all(abs(v * 6 - round(v * 6)) < 1e-9 for v in q['per_attribute'])


def test_predictions_read_single_logits_and_pairs():
    np.testing.assert_array_equal(cons.predictions([[0.5, -1., 0.]]), [[True, False, False]])
    pairs = np.array([[[0., 1.], [2., 1.], [1., 1.]]])  # argmax; a tie picks the first (negative) class
    np.testing.assert_array_equal(cons.predictions(pairs), [[True, False, False]])
    with pytest.raises(ValueError, match=r'\[N, A\]'):
        cons.predictions(np.zeros((2, 3, 4)))


def test_labels_and_argument_checks(variables):
    labels = cons.labelled(GEN, [SubConfig(channels=(64,) * 2 + (32,) * 4), SubConfig(channels=(64,) * 6)])
    assert list(labels) == ['flexible@16', 'flexible@16#2']
    assert list(cons.uniform_configs(GEN, ratios=(1.0, 0.5), resolutions=(16, 8))) == \
        ['1.0x@16', '1.0x@8', '0.5x@16', '0.5x@8']
    with pytest.raises(ValueError, match='LPIPS-VGG needs at least 16x16'):
        cons.ConsistencyEvaluator(GEN, variables, 4, eval_res=8)
    ev = cons.ConsistencyEvaluator(GEN, variables, 4, eval_res=16, use_lpips=False)
    with pytest.raises(ValueError, match='channels'):
        ev.resolve((64, 64, 32), 16)
    with pytest.raises(ValueError, match='target_res=32'):
        ev.resolve(None, 32)
