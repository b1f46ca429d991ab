"""Compares our models with outputs of the original PyTorch implementation.

The reference files (made by ``tests/fixtures/make_parity_fixture.py``) hold an original-format
checkpoint (``g_ema`` and three discriminators: ``d_mod`` multi-resolution +
architecture-conditioned, ``d_multi`` multi-resolution, ``d_plain``) with every parameter random
and non-zero, and the original's outputs on fixed inputs (NCHW): ``u_{ratio}_{target_res}``
uniform widths, ``rgb_{ratio}_{target_res}_{res}`` every intermediate RGB (the 64 px case leaves
out the one at ``res == target_res``, which is ``u_...`` itself), ``flex_{i}`` for the widths
``flex_channels[i]``, ``mix`` / ``mix_half`` (two styles, inject_index 3 / 2, truncation 0.7 /
0.5 toward ``tstyle``; ``mix_half`` at width ratio 0.5), ``wplus_out`` (w+ input), and
``{d}_y_{batch}_{res}`` logits (``d_mod_arch_{batch}_{res}`` codes) for the images
``{d}_x_{batch}_{res}`` (tiny case) or the first ``batch`` images of the uint8 pool
``images_{res}`` (64 px case; :func:`decode_images`). ``f64_{key}`` (64 px case): the output
``key`` of the original run in float64. All use the stored (const) noise buffers.
"""
import contextlib
import functools
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

from anycost_jax import convert, elastic

D_NAMES = ('d_mod', 'd_multi', 'd_plain')


def rel_err(ours, theirs) -> float:
    ours = np.asarray(ours)
    if ours.ndim == 4:
        ours = ours.transpose(0, 3, 1, 2)
    return float(np.abs(ours - theirs).max() / (np.abs(theirs).max() + 1e-12))


def decode_images(q: np.ndarray) -> np.ndarray:
    """float32 images in [-1, 1] from a uint8 pool, exactly as the fixture script fed the original."""
    return q.astype(np.float32) / np.float32(127.5) - np.float32(1)


class _Float32As64:
    """Delegates to a numpy-like module (``jax.numpy``, ``numpy``) but reads ``float32`` as float64."""

    def __init__(self, module, float64):
        self._module, self.float32 = module, float64

    def __getattr__(self, name):
        return getattr(self._module, name)


@contextlib.contextmanager
def float64_port():
    """Runs our model code in float64 (test only): JAX x64 on, and every ``float32`` our modules pin
    (the dtype a layer computes in when not in bfloat16, the head's and the arch code's casts, the
    FIR taps built with numpy) read as float64. Pass float64 inputs and :func:`to_float64` variables.
    (Left in float32, the taps alone floor the agreement near 1e-7: the separable factors of the
    [1, 3, 3, 1] blur are (1/3, 1, 1, 1/3) x 3/64 * (1, 3, 3, 1), and 1/3 is not exact in float32.)
    """
    from anycost_jax.models import discriminator, generator
    from anycost_jax.nn import layers, upfirdn
    with contextlib.ExitStack() as stack:
        stack.enter_context(jax.enable_x64(True))
        for module in (discriminator, generator, layers):
            stack.enter_context(mock.patch.object(module, 'jnp', _Float32As64(jnp, jnp.float64)))
        stack.enter_context(mock.patch.object(upfirdn, 'np', _Float32As64(np, np.float64)))
        yield


def to_float64(tree):
    """Floating leaves as float64 arrays (call inside :func:`float64_port`)."""
    def cast(a):
        a = np.asarray(a)
        return jnp.asarray(a, jnp.float64) if np.issubdtype(a.dtype, np.floating) else jnp.asarray(a)
    return jax.tree.map(cast, tree)


def _apply(gen, v, z, **kw):
    """``gen.apply(v, z, **kw)`` as one compiled program (op-by-op it runs several times slower)."""
    return jax.jit(functools.partial(gen.apply, **kw))(v, z)


def generator_errors(pt_path, npz_path, masked=True, keys=None, extras=True):
    """Yields (case, relative max error) for the generator cases in the reference.

    ``keys``: the ``u_*`` cases to run (default all); ``extras``: also the flexible widths,
    style mixing + truncation and the w+ input.
    """
    ref = np.load(npz_path)
    gen, v = convert.load_generator(pt_path, mean_style=False)
    z = ref['z']
    run = functools.partial(_apply, gen, v)
    u_keys = [k for k in ref.files if k.startswith('u_')] if keys is None else list(keys)
    assert u_keys and all(k in ref.files for k in u_keys), u_keys
    for k in u_keys:
        _, ratio, tr = k.split('_')
        ratio, tr = float(ratio), int(tr)
        img, rgbs = run(z, channel_ratio=ratio, target_res=tr, return_rgbs=True)
        # The original only checks target_res after an up-sampling block, so it ignores 4 and
        # renders full resolution; we return the 4x4 RGB, i.e. its first intermediate output.
        expected = ref[f'rgb_{ratio}_{tr}_4'] if tr == 4 else ref[k]
        yield f'sliced ratio={ratio} res={tr}', rel_err(img, expected)
        for r in rgbs if tr > 4 else ():
            res = r.shape[1]
            key = f'rgb_{ratio}_{tr}_{res}'
            yield f'rgb ratio={ratio} target={tr} res={res}', rel_err(r, ref[key] if key in ref.files else ref[k])
        if masked:
            widths = np.array(elastic.uniform_channels(gen.resolution, ratio, gen.full_channels(), gen.channel_max))
            yield f'masked ratio={ratio} res={tr}', rel_err(run(z, channel_masks=widths, target_res=tr),
                                                             expected)
    if not extras:
        return
    for i, ch in enumerate(ref['flex_channels']):
        yield f'flexible {i} sliced', rel_err(run(z, channels=[int(c) for c in ch]), ref[f'flex_{i}'])
        if masked:
            yield f'flexible {i} masked', rel_err(run(z, channel_masks=np.asarray(ch)), ref[f'flex_{i}'])
    yield 'mixing+truncation', rel_err(run(ref['z2'], inject_index=3, truncation=0.7,
                                           truncation_style=ref['tstyle']), ref['mix'])
    yield 'mixing+truncation ratio 0.5', rel_err(run(ref['z2'], inject_index=2, truncation=0.5,
                                                     truncation_style=ref['tstyle'], channel_ratio=0.5),
                                                 ref['mix_half'])
    yield 'w+ input', rel_err(run(ref['wplus'], input_is_style=True), ref['wplus_out'])


def generator_errors_float64(pt_path, npz_path):
    """Yields (case, relative max error) of our generator run in float64 (:func:`float64_port`)
    against every ``f64_u_*`` output of the original run in float64."""
    ref = np.load(npz_path)
    keys = [k for k in ref.files if k.startswith('f64_') and not k.split('_', 1)[1].startswith(D_NAMES)]
    assert keys, 'no float64 generator outputs in ' + npz_path
    with float64_port():
        gen, v = convert.load_generator(pt_path, mean_style=False)
        v, z = to_float64(v), to_float64(ref['z'])
        for k in keys:
            kind, ratio, tr = k[4:].split('_')
            assert kind == 'u', f'unknown float64 case {k}'
            img = _apply(gen, v, z, channel_ratio=float(ratio), target_res=int(tr))
            assert img.dtype == jnp.float64, img.dtype
            yield f'float64 sliced ratio={ratio} res={tr}', rel_err(img, ref[k])


def discriminator_cases(ref):
    """``(name, batch, res)`` of every discriminator logits case of a reference."""
    out = []
    for name in D_NAMES:
        for k in ref.files:
            if k.startswith(name + '_y_'):
                b, r = k.split('_')[-2:]
                out.append((name, int(b), int(r)))
    return out


def _d_inputs(ref, name, b, r):
    images = ref[f'{name}_x_{b}_{r}'] if f'{name}_x_{b}_{r}' in ref.files else decode_images(ref[f'images_{r}'][:b])
    arch = (ref[f'{name}_arch_{b}_{r}'],) if name == 'd_mod' else ()
    return images.transpose(0, 2, 3, 1), arch


def discriminator_errors(pt_path, npz_path, cases=None, x64=False):
    """Yields (case, relative max error) for the discriminator logits of the reference.

    ``cases``: ``(name, batch, res)`` to run (default :func:`discriminator_cases`); ``x64``: our
    model in float64 (:func:`float64_port`) against the original's float64 logits ``f64_*``.
    """
    ref = np.load(npz_path)
    ckpt = convert.load_torch_file(pt_path)
    cases = discriminator_cases(ref) if cases is None else list(cases)
    assert cases
    with float64_port() if x64 else contextlib.nullcontext():
        models = {}
        for name, b, r in cases:
            if name not in models:
                disc, dv = convert.original.discriminator_from_state_dict(ckpt[name])
                models[name] = (jax.jit(disc.apply), to_float64(dv) if x64 else dv)
            apply, dv = models[name]
            x, arch = _d_inputs(ref, name, b, r)
            if x64:
                x, arch = to_float64(x), tuple(to_float64(a) for a in arch)
            y = apply(dv, x, *arch)
            assert y.dtype == (jnp.float64 if x64 else jnp.float32), y.dtype
            expected = ref[f'{"f64_" if x64 else ""}{name}_y_{b}_{r}']
            yield f'{name} batch={b} res={r}', rel_err(y, expected)
