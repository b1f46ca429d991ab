"""The family-agnostic loop on a stage that is not a GAN (least squares by SGD over a data-parallel
mesh): programs run on their periods, resume is exact, SIGTERM saves and returns, the non-finite
guard keeps the last good checkpoint, samples / evaluation / export run when due; and the
workdir helpers read weights back without the optimizer state."""
import os
import signal

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from clu import metric_writers
from jax.sharding import PartitionSpec as P

from anycost_jax import sharding
from anycost_jax import workdir as workdir_lib
from anycost_jax.train import loop

DIM, BATCH = 3, 8
TRUE_W = np.array([1., -2., 0.5], np.float32)


@flax.struct.dataclass
class State:
    step: jax.Array
    w: jax.Array
    opt: optax.OptState
    evals: jax.Array  # how often the rare program ran


class Batches:
    """Deterministic batches from ``start``: batch i depends on i only (as the real pipeline)."""

    def __init__(self, start, poison_at=None):
        self.i, self.poison_at = start, poison_at

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def __next__(self):
        x = np.random.default_rng(self.i).normal(size=(BATCH, DIM)).astype(np.float32)
        y = x @ TRUE_W
        if self.poison_at is not None and self.i >= self.poison_at:
            y = y * np.inf
        self.i += 1
        return x, y


def make_stage(lr=0.1, poison_at=None, calls=None, hooks=None):
    mesh = sharding.data_mesh()
    tx = optax.sgd(lr)
    calls = {} if calls is None else calls

    def sgd(state, batch):
        x, y = batch
        loss, g = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(state.w)
        g, loss = jax.lax.pmean((g, loss), sharding.AXIS)
        upd, opt = tx.update(g, state.opt, state.w)
        return state.replace(step=state.step + 1, w=state.w + upd, opt=opt), {'loss': loss}

    def rare(state, batch):
        return state.replace(evals=state.evals + 1), {'rare': jnp.float32(1.)}

    def program(body, name):
        fn = sharding.per_device_program(body, mesh, (P(), P(sharding.AXIS)), (P(), P()))

        def counted(*args):
            calls[name] = calls.get(name, 0) + 1
            return fn(*args)
        return counted

    def init_state(fresh):
        w = jnp.zeros(DIM)
        return sharding.replicate(State(jnp.zeros((), jnp.int32), w, tx.init(w), jnp.zeros((), jnp.int32)), mesh)

    hooks = hooks or {}
    return loop.Stage(name='lsq', init_state=init_state,
                      programs=[loop.Program('sgd', program(sgd, 'sgd')),
                                loop.Program('rare', program(rare, 'rare'), lambda i: (i + 1) % 3 == 0)],
                      data=lambda start: Batches(start, poison_at), shard_batch=lambda b: sharding.shard(b, mesh),
                      checked_trees=lambda s: s.w, batch_size=BATCH, meta={'what': 'lsq'}, **hooks)


def run(tmp, num_steps, stage=None, **periods):
    writer = metric_writers.create_default_writer(str(tmp), just_logging=True)
    periods = {'log_every': 2, 'sample_every': 10 ** 6, 'checkpoint_every': 2, **periods}
    return loop.run(stage or make_stage(), loop.Periods(num_steps, **periods), str(tmp), writer)


def test_programs_run_on_their_periods_and_resume_is_exact(tmp_path):
    calls = {}
    straight = run(tmp_path / 'a', 7, make_stage(calls=calls))
    assert calls == {'sgd': 7, 'rare': 2}  # iterations 2 and 5 (0-based)
    assert int(straight.step) == 7 and int(straight.evals) == 2
    assert np.abs(np.asarray(straight.w) - TRUE_W).max() < 0.5  # it learns
    run(tmp_path / 'b', 4)
    resumed = run(tmp_path / 'b', 7)
    np.testing.assert_array_equal(np.asarray(resumed.w), np.asarray(straight.w))
    assert int(resumed.evals) == 2


def test_every_jitted_program_compiles_once_before_the_first_step(tmp_path, caplog):
    """precompile compiles every program (also one not due at step 0) side by side, and the loop's
    own calls then reuse those executables: one XLA compilation per program in the whole run."""
    mesh = sharding.data_mesh()
    tx = optax.sgd(0.1)

    def sgd(state, batch):
        x, y = batch
        g = jax.lax.pmean(jax.grad(lambda w: jnp.mean((x @ w - y) ** 2))(state.w), sharding.AXIS)
        upd, opt = tx.update(g, state.opt, state.w)
        return state.replace(step=state.step + 1, w=state.w + upd, opt=opt), {}

    def rare_program(state, batch):
        return state.replace(evals=state.evals + 1), {}

    jitted = lambda body: sharding.per_device_program(body, mesh, (P(), P(sharding.AXIS)), (P(), P()),
                                                      out_shardings=sharding.replicated(mesh))
    stage = make_stage()
    stage.programs = [loop.Program('sgd', jitted(sgd)), loop.Program('rare', jitted(rare_program), lambda i: i == 2)]
    state = stage.init_state(True)
    batch = stage.shard_batch(next(Batches(0)))
    # 'Compiling jit(f) ...' is logged when f is lowered for new argument types (in this thread; the
    # compilation itself runs in precompile's threads, where jax.log_compiles does not reach).
    compiled = lambda: [r.getMessage() for r in caplog.records if r.getMessage().startswith('Compiling jit(')]
    with jax.log_compiles(), caplog.at_level('WARNING'):
        assert loop.precompile(stage.programs, state, batch) == ['sgd', 'rare']
        assert sum('jit(sgd)' in m for m in compiled()) == 1
        assert sum('jit(rare_program)' in m for m in compiled()) == 1
        caplog.clear()
        run(tmp_path, 4, stage=stage)
    assert not [m for m in compiled() if 'jit(sgd)' in m or 'jit(rare_program)' in m], compiled()


def test_sigterm_saves_and_returns(tmp_path):
    def sample(state):
        if int(state.step) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return np.zeros((4, 4, 3), np.uint8)

    stage = make_stage(hooks={'samples': sample})
    stopped = run(tmp_path, 10, stage, sample_every=1, checkpoint_every=100)
    assert int(stopped.step) == 3
    assert workdir_lib.latest_step(str(tmp_path)) == 3
    assert sorted(os.listdir(tmp_path / workdir_lib.SAMPLES)) == [f'{i:08d}.png' for i in (1, 2, 3)]
    assert signal.getsignal(signal.SIGTERM) is not None  # the handler is restored


def test_non_finite_metrics_keep_the_last_good_checkpoint(tmp_path):
    with pytest.raises(loop.NonFiniteError, match=r'last good checkpoint \(step 4\)'):
        run(tmp_path, 10, make_stage(poison_at=5))
    assert workdir_lib.latest_step(str(tmp_path)) == 4


def test_evaluate_and_export_hooks(tmp_path):
    seen = []
    stage = make_stage(hooks={'evaluate': lambda s, step, writer: seen.append(('eval', step)),
                              'export': lambda s: seen.append(('export', int(s.step)))})
    run(tmp_path, 5, stage, eval_every=2)
    assert seen == [('eval', 2), ('eval', 4), ('export', 5)]


def test_restore_fields_reads_weights_without_the_optimizer(tmp_path):
    state = run(tmp_path, 2)
    saved, meta, step = workdir_lib.restore_fields(str(tmp_path), ['w'])
    assert step == 2 and meta['what'] == 'lsq' and meta['data_position'] == 2 * BATCH
    assert set(saved) == {'w'}
    np.testing.assert_array_equal(saved['w'], np.asarray(state.w))
    with pytest.raises(KeyError, match='no field'):
        workdir_lib.restore_fields(str(tmp_path), ['ema_params'])
    with pytest.raises(FileNotFoundError, match='without checkpoints'):
        workdir_lib.restore_fields(str(tmp_path / 'nothing'), ['w'])


def test_workdir_layout_queries(tmp_path):
    import ml_collections
    cfg = ml_collections.ConfigDict({'resolution': 8, 'lr': 0.1})
    assert not workdir_lib.is_workdir(str(tmp_path))
    workdir_lib.write_config(cfg, str(tmp_path), resume_keys=('resolution',))
    assert workdir_lib.is_stage(str(tmp_path)) and workdir_lib.is_workdir(str(tmp_path))
    assert workdir_lib.read_config(str(tmp_path)).lr == 0.1
    cfg.lr = 0.2  # not part of the run's shape: a resume may change it
    workdir_lib.write_config(cfg, str(tmp_path), resume_keys=('resolution',))
    cfg.resolution = 16
    with pytest.raises(ValueError, match='resolution: 8 -> 16'):
        workdir_lib.write_config(cfg, str(tmp_path), resume_keys=('resolution',))
    pipe = tmp_path / 'pipe'
    (pipe / workdir_lib.GENERATOR).mkdir(parents=True)
    assert workdir_lib.is_pipeline(str(pipe)) and not workdir_lib.is_stage(str(pipe))
    assert not workdir_lib.finished(str(pipe), 1)  # no checkpoints
