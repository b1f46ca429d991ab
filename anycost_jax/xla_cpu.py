"""Every XLA:CPU workaround in the package, in one place.

Each entry is a measured fix for how XLA:CPU (jax / jaxlib 0.10.2, the newest release for
Python 3.11) compiles or runs a program; none changes a result beyond float summation order,
and none applies on GPU or TPU. After a jax upgrade, re-run ``benchmarks/`` and the tests with
each entry disabled, and delete what no longer pays: callers then take the plain forms.
Measurements are in ``benchmarks/README.md``.

* convolution forms (:func:`sum_taps`, :func:`winograd_conv3x3`, :func:`im2col_conv`,
  :func:`conv_transpose2x_phases`): selected by ``nn.layers`` through
  ``lax.platform_dependent``, so other platforms compile the plain convolution;
* :func:`compile_init`: parameter initialization compiled at -O0;
* :func:`compile_optimized` (:data:`OPTIMIZED`): programs compiled with the backend
  optimizations even where ``XLA_FLAGS`` turns them off (LPIPS-VGG);
* :func:`needs_blocking_dispatch`: wait for each collective program on a multi-device CPU mesh;
* :func:`masked_branches`: per-resolution losses masked instead of ``lax.cond``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
JAX_VERSION = '0.10.2'  # what every entry below was measured on
_DN = ('NHWC', 'HWIO', 'NHWC')
OPTIMIZED = {'xla_backend_optimization_level': 3, 'xla_llvm_disable_expensive_passes': False}


def on_cpu() -> bool:
    return jax.default_backend() == 'cpu'


def compile_init(fn, *args):
    """``jax.jit(fn)(*args)``, compiled without backend optimizations on CPU.

    Flax derives one threefry key per parameter; XLA:CPU's optimizing backend spends tens of
    seconds on those unrolled hash rounds (33 s for a 32x32 generator) while -O0 compiles in
    seconds, and init runs once, so its speed does not matter.
    """
    jitted = jax.jit(fn)
    if not on_cpu():
        return jitted(*args)
    return jitted.lower(*args).compile(compiler_options={'xla_backend_optimization_level': 0})(*args)


def compile_optimized(jitted, *args):
    """``jitted`` lowered for ``args`` (arrays or ShapeDtypeStructs) and compiled with :data:`OPTIMIZED`.

    The test suite turns XLA:CPU's backend optimizations off for its many small programs; VGG's
    convolutions run about 4x slower unoptimized, which outweighs the extra compile time at once.
    """
    return jitted.lower(*args).compile(compiler_options=OPTIMIZED)


def optimized_options():
    """``compiler_options`` for a program that must be optimized (None off CPU)."""
    return OPTIMIZED if on_cpu() else None


def needs_blocking_dispatch(mesh) -> bool:
    """Whether collective programs on ``mesh`` must be waited for one by one.

    On a mesh of several CPU devices XLA:CPU deadlocks when the host queues collective
    programs ahead of the devices: one device waits in an all-reduce for a peer that never
    arrives, and after 40 s XLA aborts the process. Waiting after each program runs clean.
    Accelerators keep asynchronous dispatch.
    """
    return mesh.devices.size > 1 and mesh.devices.flat[0].platform == 'cpu'


def masked_branches() -> bool:
    """Whether per-resolution losses are masked (every branch computed) instead of ``lax.cond``.

    A ``lax.cond`` under ``shard_map`` segfaults XLA:CPU, so on CPU every sampled-resolution
    branch is computed and multiplied by its selection; other platforms skip the branches that
    were not drawn.
    """
    return on_cpu()


def select(pred, branch, *operands):
    """``branch(*operands)`` where ``pred`` holds, else zeros of its output's shape.

    Masked on CPU (:func:`masked_branches`: the branch always runs), ``lax.cond`` elsewhere.
    """
    if masked_branches():
        return jax.tree.map(lambda v: jnp.where(pred, v, jnp.zeros_like(v)), branch(*operands))
    zeros = lambda *o: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(branch, *o))
    return lax.cond(pred, branch, zeros, *operands)


# ----------------------------------------------------------------------------- convolution forms


def sum_taps(w: Array) -> Array:
    """``w.sum((0, 1))`` of an HWIO kernel as unrolled adds of its taps: XLA CPU reduces over the
    major axes of a large array slowly (tens of ms for a 3x3x512x512 kernel), the adds fuse."""
    out = w[0, 0]
    for i, j in np.ndindex(*w.shape[:2]):
        if i or j:
            out = out + w[i, j]
    return out


def _combine(terms, coefs):
    """``sum(c * t)`` over the non-zero static coefficients (no multiply for +-1)."""
    out = None
    for t, c in zip(terms, coefs):
        if c != 0:
            t = t if c == 1 else -t if c == -1 else t * c
            out = t if out is None else out + t
    return out


# Winograd F(2x2, 3x3) (Lavin & Gray, 2016): input, kernel and output transforms of one axis.
_WINO_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_WINO_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
_WINO_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def winograd_conv3x3(x: Array, w: Array) -> Array:
    """Same-padded 3x3 correlation (NHWC, HWIO) with Winograd F(2x2, 3x3).

    Every 2x2 output tile comes from a 4x4 input tile: 16 GEMMs [tiles, cin] @ [cin, cout] do
    2.25x fewer multiplies than the direct convolution; the transforms are element-wise (input)
    or small constant matmuls (kernel, output).
    """
    n, h, wd, c = x.shape
    o = w.shape[-1]
    th, tw = (h + 1) // 2, (wd + 1) // 2
    xp = jnp.pad(x, ((0, 0), (1, 2 * th - h + 1), (1, 2 * tw - wd + 1), (0, 0)))
    rows = [_combine([xp[:, i:i + 2 * th:2] for i in range(4)], _WINO_BT[a]) for a in range(4)]
    v = jnp.stack([_combine([r[:, :, j:j + 2 * tw:2] for j in range(4)], _WINO_BT[b]) for r in rows for b in range(4)])
    u = (jnp.asarray(np.kron(_WINO_G, _WINO_G), w.dtype) @ w.reshape(9, c * o)).reshape(16, c, o)
    m = jnp.einsum('tpc,tco->tpo', v.reshape(16, n * th * tw, c), u)
    y = (jnp.asarray(np.kron(_WINO_AT, _WINO_AT), m.dtype) @ m.reshape(16, -1)).reshape(2, 2, n, th, tw, o)
    return y.transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * th, 2 * tw, o)[:, :h, :wd]


def im2col_conv(x: Array, w: Array) -> Array:
    """Same-padded correlation as one matmul of the stacked k*k shifted inputs with the kernel."""
    k = w.shape[0]
    n, h, wd, c = x.shape
    xp = jnp.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    cols = jnp.concatenate([xp[:, i:i + h, j:j + wd] for i in range(k) for j in range(k)], axis=-1)
    return cols @ w.reshape(k * k * c, -1)


def conv_transpose2x_phases(x: Array, w: Array) -> Array:
    """``anycost_jax.nn.layers._conv_transpose2x`` as four stride-1 convolutions, one per output pixel parity.

    Output pixel ``2m + a`` (per axis) only meets the taps ``a, a + 2, ...`` of the kernel, so
    each parity is a small correlation of the undilated input, and the four are interleaved.
    XLA:CPU (jax 0.10) computes the kernel gradient of a dilated or conv-padded convolution on
    a slow generic path (20 ms instead of 1.5 ms for the demo's 8 -> 16 px layer); the phases
    are VALID correlations of explicitly padded inputs, which take the fast one.
    """
    k = w.shape[0]
    n, h, wd, _ = x.shape
    taps = (k + 1) // 2  # of parity 0; parity 1 has k // 2 (>= 1 for k >= 2)
    rows = []
    for a in range(2):
        cols = []
        for b in range(2):
            kern = w[a::2, b::2][::-1, ::-1]
            ka, kb = kern.shape[:2]
            xp = jnp.pad(x, ((0, 0), (ka - 1, taps - 1), (kb - 1, taps - 1), (0, 0)))
            cols.append(lax.conv_general_dilated(xp, kern, (1, 1), 'VALID', dimension_numbers=_DN))
        rows.append(jnp.stack(cols, axis=3))  # [n, h', w', 2 (b), c]
    y = jnp.stack(rows, axis=2)  # [n, h', 2 (a), w', 2 (b), c]
    y = y.reshape(n, 2 * (h + taps - 1), 2 * (wd + taps - 1), w.shape[-1])
    return y[:, :2 * h + k - 2, :2 * wd + k - 2]
