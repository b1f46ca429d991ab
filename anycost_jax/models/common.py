"""Shared model utilities."""
from __future__ import annotations

import jax

from anycost_jax import xla_cpu


def init_variables(module, rng: jax.Array, *args, **kwargs) -> dict:
    """``module.init`` jitted (at -O0 on CPU: :func:`anycost_jax.xla_cpu.compile_init`)."""
    return xla_cpu.compile_init(lambda key: module.init({'params': key}, *args, **kwargs), rng)
