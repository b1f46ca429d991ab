"""Train-state checkpoints on 8 simulated devices: exact round trips (typed key, step, optimizer
state, shardings), keep-last-K, async saves, and recovery from corrupt or partial checkpoints."""
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from anycost_jax.models import Generator
from anycost_jax.models.discriminator import Discriminator
from anycost_jax.train import anycost_steps as st
from anycost_jax.checkpoint import Checkpointer

RES = 16
LOGGER = 'anycost_jax.checkpoint'
# Orbax/TensorStore may report a read error to an asyncio loop that the failed restore already
# closed ("Event loop is closed", at garbage collection): noise from the corruption tests.
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')


@pytest.fixture(scope='module')
def mesh():
    assert jax.device_count() == 8, 'tests/conftest.py should give 8 simulated CPU devices'
    return jax.make_mesh((jax.device_count(),), (st.AXIS,))


@pytest.fixture(scope='module')
def state(mesh):
    """A tiny replicated TrainState with a non-trivial step, key, parameters and optimizer state."""
    gen = Generator(RES, style_dim=16, n_mlp=1, channel_multiplier=1 / 64)
    disc = Discriminator(RES, channel_multiplier=1 / 64)
    # The real trees, filled on the host (eval_shape: no compilation of the networks' init).
    rs = np.random.RandomState(0)
    fill = lambda t: jax.tree.map(lambda s: rs.standard_normal(s.shape).astype(s.dtype), t)
    g_vars = fill(jax.eval_shape(lambda k: gen.init({'params': k}, jnp.zeros((1, 16))), jax.random.key(0)))
    d_vars = fill(jax.eval_shape(lambda k: disc.init({'params': k}, jnp.zeros((1, RES, RES, 3))), jax.random.key(1)))
    g_tx, d_tx = st.adam(0.002), st.adam(0.002)
    s = st.create_state(jax.random.key(2), g_vars, d_vars, g_tx, d_tx)
    # Zeros would hide a restore that forgets the optimizer state: fill it with distinct values.
    g_opt = jax.tree.map(lambda x: np.asarray(x) + (3 if jnp.issubdtype(x.dtype, jnp.integer) else
                                                     rs.uniform(size=x.shape).astype(x.dtype)), s.g_opt_state)
    s = s.replace(step=np.int32(7), g_opt_state=g_opt, mean_path_length=np.float32(0.25))
    steps = st.Steps(mesh, gen, disc, st.StepConfig(), g_tx, d_tx)
    return steps.replicate(s)


def tiny(mesh, seed=0):
    """A small replicated pytree with a typed key (fast to save, for the recovery tests)."""
    rep = NamedSharding(mesh, P())
    tree = {'w': jnp.arange(24., dtype=jnp.float32).reshape(4, 6) + seed, 'n': jnp.int32(seed),
            'rng': jax.random.key(seed)}
    return jax.device_put(tree, rep)


def assert_same(a, b):
    ka, kb = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
    assert [p for p, _ in ka] == [p for p, _ in kb]
    for (path, x), (_, y) in zip(ka, kb):
        assert x.dtype == y.dtype, path
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.random.key_impl(x) == jax.random.key_impl(y), path
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def save_steps(ckpt, tree, steps):
    for s in steps:
        ckpt.save(s, tree, {'step': s, 'data': {'epoch': 0, 'position': 10 * s}})
    ckpt.wait()


def truncate_arrays(step_dir):
    """Truncates every array data file of a saved step (as a disk-full or killed copy would)."""
    data = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(step_dir, 'state')) for f in fs
            if os.path.basename(r) == 'd']  # OCDBT data files: state/ocdbt.process_<i>/d/<hash>
    assert data, os.listdir(step_dir)
    for f in data:
        with open(f, 'r+b') as fh:
            fh.truncate(os.path.getsize(f) // 3)


def test_round_trip_exact_with_shardings(tmp_path, state, mesh):
    meta = {'data': {'epoch': 1, 'position': 96}, 'config': {'lr': 0.002}, 'teacher': None}
    with Checkpointer(str(tmp_path)) as ckpt:
        ckpt.save(7, state, meta)
    assert sorted(os.listdir(tmp_path)) == ['7']
    rep = NamedSharding(mesh, P())
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    for target in (state, abstract):
        with Checkpointer(str(tmp_path)) as ckpt:  # a fresh process resuming
            assert ckpt.latest_step() == 7 and ckpt.all_steps() == [7]
            restored, got_meta, step = ckpt.restore(target)
        assert step == 7 and got_meta == meta
        assert type(restored) is st.TrainState
        assert_same(restored, state)
        assert int(restored.step) == 7 and float(restored.mean_path_length) == 0.25
        for x in jax.tree.leaves(restored):
            assert x.sharding == rep, x.sharding
            assert len(x.addressable_shards) == 8
    # The restored key is a working typed key, equal to the saved one.
    assert jnp.issubdtype(restored.rng.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(jax.random.split(restored.rng)),
                                  jax.random.key_data(jax.random.split(state.rng)))


def test_keep_last_k(tmp_path, mesh):
    with Checkpointer(str(tmp_path), keep=2) as ckpt:
        save_steps(ckpt, tiny(mesh), [1, 2, 3, 4])
        assert ckpt.all_steps() == [3, 4] and ckpt.latest_step() == 4
    assert sorted(os.listdir(tmp_path)) == ['3', '4']


def test_async_save_then_wait(tmp_path, mesh):
    tree = tiny(mesh, seed=5)
    expected = jax.tree.map(lambda x: x, jax.device_get(jax.tree.map(
        lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x, tree)))
    ckpt = Checkpointer(str(tmp_path), async_save=True)
    ckpt.save(3, tree, {'a': 1})
    # Once save() returns the arrays may be donated: the copy off the devices is already made.
    for x in jax.tree.leaves(tree):
        x.delete()
    ckpt.wait()
    assert os.path.exists(tmp_path / '3' / 'commit_success.txt')
    ckpt.save(3, tiny(mesh), {'a': 2})  # already saved: skipped, not overwritten
    ckpt.close()
    with Checkpointer(str(tmp_path)) as ckpt:
        restored, meta, step = ckpt.restore(tiny(mesh))
    assert step == 3 and meta == {'a': 1}
    np.testing.assert_array_equal(restored['w'], expected['w'])
    np.testing.assert_array_equal(jax.random.key_data(restored['rng']), expected['rng'])


def test_corrupt_latest_falls_back_and_is_moved_aside(tmp_path, mesh, caplog):
    with Checkpointer(str(tmp_path)) as ckpt:
        save_steps(ckpt, tiny(mesh, 1), [1])
        save_steps(ckpt, tiny(mesh, 2), [2])
    truncate_arrays(tmp_path / '2')
    with Checkpointer(str(tmp_path)) as ckpt:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            restored, meta, step = ckpt.restore(tiny(mesh))
        assert step == 1 and meta['step'] == 1
        assert_same(restored, tiny(mesh, 1))
        warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
        assert any(str(tmp_path) in w and 'step 2' in w and 'corrupt' in w for w in warnings), warnings
        assert sorted(os.listdir(tmp_path)) == ['1', '2.corrupt']
        assert ckpt.all_steps() == [1]
        # The same step can be saved again, and a second corruption of it does not collide.
        save_steps(ckpt, tiny(mesh, 2), [2])
        assert ckpt.restore(tiny(mesh))[2] == 2
    truncate_arrays(tmp_path / '2')
    with Checkpointer(str(tmp_path)) as ckpt:
        assert ckpt.restore(tiny(mesh))[2] == 1
    assert sorted(os.listdir(tmp_path)) == ['1', '2.corrupt', '2.corrupt-1']


def _no_commit_marker(d):
    os.remove(d / 'commit_success.txt')


def _no_meta(d):
    import shutil
    shutil.rmtree(d / 'meta')


def _bad_meta_json(d):
    with open(d / 'meta' / 'metadata', 'r+b') as f:
        f.truncate(3)


def _no_array_metadata(d):
    with open(d / 'state' / '_METADATA', 'w') as f:
        f.write('{"tree_metadata": ')


@pytest.mark.parametrize('damage', [_no_commit_marker, _no_meta, _bad_meta_json, _no_array_metadata],
                         ids=lambda f: f.__name__.strip('_'))
def test_partial_checkpoint_is_skipped(tmp_path, mesh, damage, caplog):
    with Checkpointer(str(tmp_path)) as ckpt:
        save_steps(ckpt, tiny(mesh, 1), [1])
        save_steps(ckpt, tiny(mesh, 2), [2])
    damage(tmp_path / '2')
    os.makedirs(tmp_path / '3.orbax-checkpoint-tmp-1234' / 'state')  # a save killed mid-way
    with Checkpointer(str(tmp_path)) as ckpt:
        assert ckpt.latest_step() == 2  # the unfinished save is not a checkpoint
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            restored, meta, step = ckpt.restore(tiny(mesh))
    assert step == 1 and meta['step'] == 1
    assert_same(restored, tiny(mesh, 1))
    assert any('step 2' in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert sorted(os.listdir(tmp_path)) == ['1', '2.corrupt', '3.orbax-checkpoint-tmp-1234']


def test_all_corrupt_raises(tmp_path, mesh, caplog):
    with Checkpointer(str(tmp_path)) as ckpt:
        save_steps(ckpt, tiny(mesh), [1, 2])
    truncate_arrays(tmp_path / '1')
    truncate_arrays(tmp_path / '2')
    with Checkpointer(str(tmp_path)) as ckpt:
        with pytest.raises(RuntimeError, match=r'no checkpoint in .* could be restored.*step 2.*step 1'):
            ckpt.restore(tiny(mesh))
        assert sorted(os.listdir(tmp_path)) == ['1.corrupt', '2.corrupt']  # nothing deleted
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert ckpt.restore(tiny(mesh)) is None  # only moved-aside ones left: fresh start, with a warning
        assert any('1.corrupt' in r.getMessage() for r in caplog.records)


def test_structure_mismatch_is_not_corruption(tmp_path, state, mesh):
    with Checkpointer(str(tmp_path)) as ckpt:
        save_steps(ckpt, state, [1])
    rep = NamedSharding(mesh, P())
    other_shape = state.replace(mean_path_length=jax.device_put(jnp.zeros(3), rep))
    other_tree = state.replace(g_noise={'noise_extra': jax.device_put(jnp.zeros((1, 4, 4, 1)), rep)})
    for target, what in ((other_shape, r'different shapes.*mean_path_length'),
                         (other_tree, r'not in the checkpoint.*noise_extra')):
        with Checkpointer(str(tmp_path)) as ckpt:
            with pytest.raises(ValueError, match=r'does not match the current config.*' + what):
                ckpt.restore(target)
        assert sorted(os.listdir(tmp_path)) == ['1']  # nothing moved


def test_explicit_step_and_no_checkpoint(tmp_path, mesh):
    assert Checkpointer(str(tmp_path / 'absent')).restore(tiny(mesh)) is None
    with Checkpointer(str(tmp_path / 'c')) as ckpt:
        assert ckpt.latest_step() is None and ckpt.all_steps() == []
        assert ckpt.restore(tiny(mesh)) is None
        save_steps(ckpt, tiny(mesh, 1), [1])
        save_steps(ckpt, tiny(mesh, 2), [2])
        restored, meta, step = ckpt.restore(tiny(mesh), step=1)
        assert step == 1 and int(restored['n']) == 1
        # Restored arrays take the target's dtype (and sharding).
        target = jax.tree.map(lambda x: x.astype(jnp.bfloat16) if x.dtype == jnp.float32 else x, tiny(mesh))
        restored, _, step = ckpt.restore(target)
        assert step == 2 and restored['w'].dtype == jnp.bfloat16 and restored['w'].sharding == target['w'].sharding
        np.testing.assert_array_equal(np.asarray(restored['w'], np.float32), np.asarray(tiny(mesh, 2)['w']))
        with pytest.raises(FileNotFoundError, match='step 5'):
            ckpt.restore(tiny(mesh), step=5)
        with pytest.raises(TypeError, match='JSON'):
            ckpt.save(3, tiny(mesh), {'bad': object()})
