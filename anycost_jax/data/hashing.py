"""Counter-based random numbers: a pure function of integer keys.

Everything random in the input pipeline (epoch permutations, flips, the procedural scenes)
comes from here rather than from a stateful generator, so that any example at any step can
be recomputed on its own (resume, per-host slices) and the stream does not depend on the
NumPy version's generator algorithms.
"""
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x):
    """The splitmix64 finalizer (a bijection of uint64 with good avalanche)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _as_u64(k):
    k = np.asarray(k)
    if k.dtype.kind not in 'iu':
        raise TypeError(f'hash keys must be integers, got dtype {k.dtype}')
    return k.astype(np.int64).astype(np.uint64) if k.dtype.kind == 'i' else k.astype(np.uint64)


def hash64(*keys) -> np.ndarray:
    """uint64 hash of integer keys (scalars or broadcastable arrays), folded left to right."""
    with np.errstate(over='ignore'):
        h = np.zeros((), np.uint64)
        for k in keys:
            h = _mix(h ^ _as_u64(k))
        return np.asarray(h)


def uniform(*keys) -> np.ndarray:
    """Float64 in [0, 1) from the top 53 bits of `hash64(*keys)`."""
    return (hash64(*keys) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
