"""Shared model utilities."""
from __future__ import annotations

import jax


def init_variables(module, rng: jax.Array, *args, **kwargs) -> dict:
    """``module.init`` jitted, compiled without backend optimizations on CPU.

    Flax derives one threefry key per parameter; XLA:CPU's optimizing backend spends tens of
    seconds on those unrolled hash rounds (33 s for a 32x32 generator) while -O0 compiles in
    seconds, and init runs once, so its speed does not matter.
    """
    fn = jax.jit(lambda key: module.init({'params': key}, *args, **kwargs))
    if jax.default_backend() != 'cpu':
        return fn(rng)
    return fn.lower(rng).compile(compiler_options={'xla_backend_optimization_level': 0})(rng)
