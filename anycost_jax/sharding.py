"""Data-parallel placement shared by training, evaluation and search.

Every program is ``jax.jit(jax.shard_map(...))`` over a 1-D mesh named :data:`AXIS` of all
devices of all processes: parameters replicated, batches split along their first axis.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from anycost_jax import xla_cpu

AXIS = 'data'


def data_mesh(devices: int | None = None) -> jax.sharding.Mesh:
    """The 1-D ``data`` mesh over every device of every process (or the first ``devices``)."""
    return jax.make_mesh((devices or jax.device_count(),), (AXIS,))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def replicate(tree, mesh):
    """Copies a pytree onto every device of ``mesh`` (works across processes; typed keys too).

    Never aliases the input's buffers: a state is donated to every step, and a buffer it
    shared with another tree (e.g. a teacher made from the same parameters) would be freed.
    The copy goes through host memory: ``device_put(..., may_alias=False)`` still shared a
    buffer between two trees made from the same arrays, and cannot target other processes'
    devices. Set-up only, so cheap enough.
    """
    sharding = replicated(mesh)

    def host(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)  # replicated: any local shard is the whole value
        return np.asarray(x)

    def fresh(x):
        if jnp.issubdtype(getattr(x, 'dtype', np.float32), jax.dtypes.prng_key):
            data = host(jax.random.key_data(x))
            arr = jax.make_array_from_callback(data.shape, sharding, lambda i: data[i])
            return jax.random.wrap_key_data(arr, impl=jax.random.key_impl(x))
        a = host(x)
        return jax.make_array_from_callback(a.shape, sharding, lambda i: a[i])
    return jax.tree.map(fresh, tree)


def shard(local_batch, mesh):
    """This process's slice of a global batch (a pytree) -> global arrays split over ``data``."""
    sharding = NamedSharding(mesh, P(AXIS))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def local_copy(tree):
    """Process-local numpy copy of a replicated global pytree (no collective)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


def local_rows(arr) -> np.ndarray:
    """This process's rows of an array split over ``data``, in order."""
    shards = sorted(arr.addressable_shards, key=lambda s: s.index[0].start or 0)
    return np.concatenate([np.asarray(s.data) for s in shards])


def gather_rows(local: np.ndarray, n_local: int) -> np.ndarray:
    """Every process's first ``n_local`` rows, process-major (the order of the global batch)."""
    local = local[:n_local]
    if jax.process_count() == 1:
        return local
    return np.asarray(multihost_utils.process_allgather(local)).reshape(-1, *local.shape[1:])


def varying(tree):
    """``tree`` (replicated values inside a per-device body) marked as varying over :data:`AXIS`.

    Differentiate with respect to this, not the replicated input itself: inside ``shard_map``
    the gradient of a per-device loss with respect to a replicated input is already summed over
    the devices (the transpose of the implicit broadcast), so a ``pmean`` after it would give
    the device count times the mean gradient. With respect to the varying copy each device gets
    its own gradient, and ``pmean`` averages them: pmap's semantics.
    """
    return jax.tree.map(lambda a: jax.lax.pcast(a, AXIS, to='varying'), tree)


def per_device_program(body, mesh, in_specs, out_specs, **jit_kwargs):
    """``jit(shard_map(body))``; on a multi-device CPU mesh each call waits for its results
    (:func:`anycost_jax.xla_cpu.needs_blocking_dispatch`)."""
    program = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=out_specs), **jit_kwargs)
    if not xla_cpu.needs_blocking_dispatch(mesh):
        return program

    def blocking(*args):
        return jax.block_until_ready(program(*args))
    blocking.lower = program.lower  # for train.loop.precompile
    return blocking
