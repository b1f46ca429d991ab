"""Train-state checkpoints: save, keep the last few, resume, and survive a broken latest one.

:class:`Checkpointer` wraps an Orbax ``CheckpointManager``. Layout on disk::

    <directory>/
      <step>/                      one finished checkpoint per saved step (no zero padding)
        _CHECKPOINT_METADATA       Orbax's step metadata (times)
        commit_success.txt         Orbax's commit marker (written last)
        state/                     the train state, Orbax ``StandardSave`` (OCDBT / zarr arrays)
        meta/metadata              the JSON ``meta`` dict (data position, config, teacher, ...)
      <step>.orbax-checkpoint-tmp-<n>/   a save in progress, or one killed mid-way (never read)
      <step>.corrupt[-<i>]/        a checkpoint that failed to restore, moved aside (never deleted)

The state is stored as the nested dict of ``flax.serialization.to_state_dict`` (field names as
keys, optax states as ``'0'``, ``'1'``, ...). Orbax cannot store typed PRNG keys
(``jax.random.key``), so those leaves are stored as their ``jax.random.key_data`` and wrapped again
with the *target's* key implementation on restore; callers pass and get real states.

Saving is asynchronous by default: :meth:`Checkpointer.save` returns once the arrays are copied
off the devices (the caller may then donate or change the state) and writes in a background
thread, into a temporary directory that is renamed to ``<step>`` when complete; a save killed
half-way leaves only the temporary directory, which is never taken for a checkpoint. The next
``save``, :meth:`~Checkpointer.restore`, :meth:`~Checkpointer.wait` and
:meth:`~Checkpointer.close` wait for the pending one. Only the last ``keep`` steps are kept.

Restoring tries the latest step first. A checkpoint that cannot be read (files missing or
truncated, the commit marker missing, the JSON unreadable, Orbax raising on restore) is logged
as a WARNING, moved aside to ``<step>.corrupt`` (``.corrupt-1``, ... if taken), and the previous
step is tried; if none restores, ``RuntimeError`` lists what was tried. A checkpoint whose tree
(names or shapes) differs from the target state, e.g. written with another model config, is not
corrupt: that raises ``ValueError`` and nothing is moved.

Multi-process (``jax.distributed``): every process must make the same calls. Orbax writes the
global arrays from all processes; the processes agree on whether a checkpoint is usable (an
all-gather of the verdicts), and only process 0 moves directories aside.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

__all__ = ['Checkpointer']

log = logging.getLogger(__name__)

_STATE, _META = 'state', 'meta'
# Orbax writes this file last in both of its commit modes (before the atomic rename on local
# disks; as the commit itself on GCS). A step directory without it was never fully committed.
_COMMIT_MARKER = 'commit_success.txt'
_CORRUPT = '.corrupt'
_OK, _BROKEN, _MISMATCH = 0, 1, 2


# --------------------------------------------------------------------------- typed PRNG keys


def _is_key(x) -> bool:
    dtype = getattr(x, 'dtype', None)
    return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


def _key_impl(x):
    """The key implementation of a key array or a ShapeDtypeStruct with a key dtype."""
    return jax.random.key_impl(x if isinstance(x, jax.Array) else jnp.empty((0,), x.dtype))


def _host_copy(x):
    """A replicated array as one numpy copy: written once by the primary process, and without the
    device-side slicing Orbax applies to replicated jax.Arrays (which compiled ~200 small programs
    and took ~15 s on the first save of a small train state on CPU)."""
    if isinstance(x, jax.Array) and x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    return x


def _to_disk(state):
    """The tree that is written: a nested dict, typed keys replaced by their raw data."""
    return jax.tree.map(lambda x: _host_copy(jax.random.key_data(x) if _is_key(x) else x),
                        flax.serialization.to_state_dict(state))


def _abstract_leaf(x):
    """The restore target of one leaf: shape, dtype and sharding of what is to come back."""
    if _is_key(x):
        data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(x.shape, x.dtype))
        return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=getattr(x, 'sharding', None))
    if isinstance(x, jax.Array):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return x  # a ShapeDtypeStruct already, or a host value (numpy / scalar), restored as such


def _from_disk(target_state, restored: dict):
    """Rebuilds ``target_state``'s type from a restored nested dict, re-wrapping typed keys."""
    target = flax.serialization.to_state_dict(target_state)

    def leaf(t, r):
        if not _is_key(t):
            return r
        key = jax.random.wrap_key_data(r, impl=_key_impl(t))
        sharding = getattr(t, 'sharding', None)
        return jax.device_put(key, sharding) if sharding is not None and key.sharding != sharding else key

    return flax.serialization.from_state_dict(target_state, jax.tree.map(leaf, target, restored))


# --------------------------------------------------------------------------- multi-process helpers


def _worst(verdict: int) -> int:
    """The largest verdict over all processes (every process must call this)."""
    if jax.process_count() == 1:
        return verdict
    from jax.experimental import multihost_utils
    return int(np.max(multihost_utils.process_allgather(np.int32(verdict))))


def moved_aside(directory) -> list[str]:
    """The names of the checkpoints under ``directory`` that failed to restore and were moved aside."""
    directory = epath.Path(directory)
    return sorted(p.name for p in directory.glob(f'*{_CORRUPT}*')) if directory.exists() else []


def _paths(tree) -> dict:
    return {jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


class Checkpointer:
    """Saves and restores the train state (plus a JSON ``meta`` dict) under ``directory``.

    ``keep``: how many of the latest checkpoints to keep (``None``: all). ``async_save``: write
    in a background thread (see the module docstring).
    """

    def __init__(self, directory: str, *, keep: Optional[int] = 3, async_save: bool = True):
        if keep is not None and keep < 1:
            raise ValueError(f'Checkpointer: keep={keep}; expected a positive number of checkpoints (or None: all)')
        self.directory = epath.Path(directory)
        if not str(directory).startswith(('gs://', 's3://')):
            self.directory = self.directory.absolute()  # Orbax wants absolute paths
        registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
        for name, save, restore, handler in ((_STATE, ocp.args.StandardSave, ocp.args.StandardRestore,
                                              ocp.StandardCheckpointHandler),
                                             (_META, ocp.args.JsonSave, ocp.args.JsonRestore,
                                              ocp.JsonCheckpointHandler)):
            registry.add(name, save, handler)
            registry.add(name, restore, handler)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
        self._mngr = ocp.CheckpointManager(self.directory, options=options, handler_registry=registry)

    # ------------------------------------------------------------------ queries

    def all_steps(self) -> list[int]:
        return sorted(self._mngr.all_steps())

    def latest_step(self) -> Optional[int]:
        return self._mngr.latest_step()

    # ------------------------------------------------------------------ saving

    def save(self, step: int, state, meta: dict, *, force: bool = False) -> None:
        """Saves ``state`` and ``meta`` as ``step`` (asynchronously unless ``async_save=False``).

        A step that is already saved is skipped (logged). A step older than the latest saved one
        is skipped too unless ``force=True`` (Orbax's policy); a saved step is never overwritten.
        """
        step = int(step)
        if not isinstance(meta, dict):
            raise TypeError(f'Checkpointer.save: meta must be a dict, got {type(meta).__name__}')
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as e:  # fail here, not in the background thread
            raise TypeError(f'Checkpointer.save: meta is not JSON-serializable ({e}); store plain numbers, '
                            f'strings, lists and dicts') from e
        if step in self._mngr.all_steps():
            log.info('checkpoint for step %d already exists in %s; not saving it again', step, self.directory)
            return
        args = ocp.args.Composite(**{_STATE: ocp.args.StandardSave(_to_disk(state)), _META: ocp.args.JsonSave(meta)})
        if not self._mngr.save(step, args=args, force=force):
            log.warning('checkpoint for step %d not saved in %s: the latest saved step is %s (pass force=True to '
                        'save an older step)', step, self.directory, self.latest_step())

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are written (raises their errors)."""
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ restoring

    def restore(self, target_state, step: Optional[int] = None) -> Optional[tuple[Any, dict, int]]:
        """``(state, meta, step)`` of the latest usable checkpoint (or of ``step``); ``None`` if none.

        ``target_state``: a state (or a tree of ``jax.ShapeDtypeStruct``) with the wanted
        structure, dtypes and shardings; the restored arrays get them. Corrupt checkpoints are
        moved aside (latest first) and the previous one tried; with an explicit ``step`` no other
        step is tried. Raises ``ValueError`` if a checkpoint does not match the target's structure
        and ``RuntimeError`` if checkpoints exist but none could be restored.
        """
        self.wait()
        self._mngr.reload()
        steps = self.all_steps()
        if step is not None:
            if int(step) not in steps:
                raise FileNotFoundError(f'no checkpoint for step {step} in {self.directory}; saved steps: {steps}')
            steps = [int(step)]
        if not steps:
            aside = moved_aside(self.directory)
            if aside:
                log.warning('no usable checkpoint in %s (only corrupt ones moved aside: %s); starting fresh',
                            self.directory, aside)
            return None
        target = jax.tree.map(_abstract_leaf, flax.serialization.to_state_dict(target_state))
        tried = []
        for s in reversed(steps):
            verdict, result, error = self._try_restore(s, target)
            if verdict == _OK:
                state = _from_disk(target_state, result[_STATE])
                if tried:
                    log.warning('resumed from step %d in %s after skipping corrupt checkpoints: %s', s,
                                self.directory, '; '.join(tried))
                return state, dict(result[_META]), s
            if verdict == _MISMATCH:
                raise ValueError(f'checkpoint step {s} in {self.directory} does not match the current config (the '
                                 f'train state has a different structure: {error}). Resume with the config it was '
                                 f'written with, or use a new checkpoint directory')
            log.warning('checkpoint step %d in %s is corrupt or incomplete (%s); moving it aside', s,
                        self.directory, error)
            tried.append(f'step {s}: {error} (moved to {self._move_aside(s)})')
        raise RuntimeError(f'no checkpoint in {self.directory} could be restored; tried {len(tried)}: '
                           + '; '.join(tried) + '. Nothing was deleted: repair or restore a moved-aside directory '
                           '(rename it back to its step number), or start afresh with a new checkpoint directory')

    def restore_fields(self, fields, step: Optional[int] = None) -> tuple[dict, dict, int]:
        """``({field: numpy tree}, meta, step)``: only the named top-level fields of the state.

        For readers that want weights, not a resumable state (e.g. the EMA generator without
        either Adam state): nothing else is read from disk and no target state is needed. Reads
        the latest step unless ``step`` is given; raises ``FileNotFoundError`` if there is none.
        Corrupt checkpoints are not moved aside here (that is :meth:`restore`'s job).
        """
        self.wait()
        self._mngr.reload()
        steps = self.all_steps()
        step = steps[-1] if step is None and steps else step
        if step is None or int(step) not in steps:
            raise FileNotFoundError(f'no checkpoint{"" if step is None else f" for step {step}"} in '
                                    f'{self.directory}; saved steps: {steps}')
        step = int(step)
        saved = self._mngr.item_metadata(step)[_STATE]
        saved = getattr(saved, 'tree', saved)
        missing = [f for f in fields if f not in saved]
        if missing:
            raise KeyError(f'checkpoint step {step} in {self.directory} has no field(s) {missing}; it has '
                           f'{sorted(saved)}')
        target = {f: jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), saved[f]) for f in fields}
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
        state = ocp.PyTreeCheckpointer().restore(
            self.directory / str(step) / _STATE,
            args=ocp.args.PyTreeRestore(target, restore_args=restore_args, partial_restore=True))
        meta = self._mngr.restore(step, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()}))[_META]
        return dict(state), dict(meta), step

    def _try_restore(self, step: int, target: dict):
        """(verdict agreed by all processes, restored Composite or None, error text)."""
        step_dir = self.directory / str(step)
        verdict, error, saved = _OK, '', None
        try:
            if not (step_dir / _COMMIT_MARKER).exists():
                raise FileNotFoundError(f'{_COMMIT_MARKER} missing: the checkpoint was never fully committed')
            for item in (_STATE, _META):
                if not (step_dir / item).is_dir():
                    raise FileNotFoundError(f'item directory {item!r} missing')
            saved = self._mngr.item_metadata(step)[_STATE]
        except Exception as e:  # noqa: BLE001 - anything unreadable is corruption
            verdict, error = _BROKEN, _short(e)
        if verdict == _OK and saved is not None:  # None: no array metadata; the restore decides
            error = _mismatch(getattr(saved, 'tree', saved), target)
            verdict = _MISMATCH if error else _OK
        verdict = _worst(verdict)
        if verdict != _OK:
            return verdict, None, error or 'on another process'
        try:
            result = self._mngr.restore(step, args=ocp.args.Composite(
                **{_STATE: ocp.args.StandardRestore(target), _META: ocp.args.JsonRestore()}))
            if not isinstance(result[_META], dict):
                raise ValueError(f'meta is {type(result[_META]).__name__}, not a JSON object')
        except Exception as e:  # noqa: BLE001
            verdict, error, result = _BROKEN, _short(e), None
        verdict = _worst(verdict)
        return verdict, (result if verdict == _OK else None), error or 'on another process'

    def _move_aside(self, step: int) -> str:
        """Renames ``<step>`` to a free ``<step>.corrupt[-i]`` (process 0 only); returns the new name."""
        src = self.directory / str(step)
        dst = self.directory / f'{step}{_CORRUPT}'
        i = 0
        while dst.exists():
            i += 1
            dst = self.directory / f'{step}{_CORRUPT}-{i}'
        _worst(0)  # every process has picked the same name before process 0 takes it
        failed = 0
        if jax.process_index() == 0:
            try:
                src.rename(dst)
            except Exception as e:  # noqa: BLE001
                log.error('could not move %s aside to %s: %s', src, dst, e)
                failed = 1
        if _worst(failed):  # also the barrier: nobody looks at the directory before the move
            raise RuntimeError(f'checkpoint {src} is corrupt and could not be moved aside to {dst}; move or '
                               f'remove it by hand and resume again')
        self._mngr.reload()
        return dst.name


def _short(e: Exception, limit: int = 400) -> str:
    """One line of ``TypeName: message``, without TensorStore's (very long) spec dumps."""
    text = re.sub(r'\s*\[tensorstore_spec=.*?\]\s*$', '', ' '.join(str(e).split()))
    text = re.sub(r'See full TensorStore details:.*', '', text).strip()
    text = text if len(text) <= limit else text[:limit] + ' ...'
    return f'{type(e).__name__}: {text}'


def _shape(x) -> tuple:
    return tuple(x.shape) if hasattr(x, 'shape') else np.shape(x)


def _mismatch(saved_tree, target: dict) -> str:
    """'' if the saved tree has the target's leaves and shapes, else a description of the difference."""
    saved, wanted = _paths(saved_tree), _paths(target)
    missing = sorted(set(wanted) - set(saved))
    extra = sorted(set(saved) - set(wanted))
    shapes = [f'{p} saved {tuple(saved[p].shape)} vs expected {_shape(wanted[p])}'
              for p in sorted(set(saved) & set(wanted))
              if getattr(saved[p], 'shape', None) is not None and tuple(saved[p].shape) != _shape(wanted[p])]
    parts = []
    for what, items in (('not in the checkpoint', missing), ('only in the checkpoint', extra),
                        ('different shapes', shapes)):
        if items:
            more = f' and {len(items) - 5} more' if len(items) > 5 else ''
            parts.append(f'{what}: ' + ', '.join(items[:5]) + more)
    return '; '.join(parts)
