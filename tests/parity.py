"""Compares our models with outputs of the original PyTorch implementation.

The reference files hold an original-format checkpoint (``g_ema`` and three discriminators:
``d_mod`` multi-resolution + architecture-conditioned, ``d_multi`` multi-resolution, ``d_plain``)
with every parameter random and non-zero, and the original's outputs on fixed inputs (NCHW):
``u_{ratio}_{target_res}`` uniform widths, ``rgb_{ratio}_{target_res}_{res}`` every intermediate
RGB, ``flex_{i}`` for the widths ``flex_channels[i]``, ``mix`` / ``mix_half`` (two styles,
inject_index 3 / 2, truncation 0.7 / 0.5 toward ``tstyle``), ``wplus_out`` (w+ input), and
``{d}_y_{batch}_{res}`` logits for ``{d}_x_...`` images (``d_mod_arch_...`` codes). All use
the stored (const) noise buffers.
"""
import numpy as np

from anycost_jax import convert, elastic


def rel_err(ours, theirs) -> float:
    ours = np.asarray(ours)
    if ours.ndim == 4:
        ours = ours.transpose(0, 3, 1, 2)
    return float(np.abs(ours - theirs).max() / (np.abs(theirs).max() + 1e-12))


def generator_errors(pt_path, npz_path, masked=True):
    """Yields (case, relative max error) for every generator case in the reference."""
    ref = np.load(npz_path)
    gen, v = convert.load_generator(pt_path, mean_style=False)
    z = ref['z']
    for k in ref.files:
        if not k.startswith('u_'):
            continue
        _, ratio, tr = k.split('_')
        ratio, tr = float(ratio), int(tr)
        img, rgbs = gen.apply(v, z, channel_ratio=ratio, target_res=tr, return_rgbs=True)
        # The original only checks target_res after an up-sampling block, so it ignores 4 and
        # renders full resolution; we return the 4x4 RGB, i.e. its first intermediate output.
        expected = ref[f'rgb_{ratio}_{tr}_4'] if tr == 4 else ref[k]
        yield f'sliced ratio={ratio} res={tr}', rel_err(img, expected)
        for r in rgbs if tr > 4 else ():
            yield f'rgb ratio={ratio} target={tr} res={r.shape[1]}', rel_err(r, ref[f'rgb_{ratio}_{tr}_{r.shape[1]}'])
        if masked:
            widths = np.array(elastic.uniform_channels(gen.resolution, ratio, gen.full_channels(), gen.channel_max))
            yield f'masked ratio={ratio} res={tr}', rel_err(gen.apply(v, z, channel_masks=widths, target_res=tr),
                                                             expected)
    for i, ch in enumerate(ref['flex_channels']):
        yield f'flexible {i} sliced', rel_err(gen.apply(v, z, channels=[int(c) for c in ch]), ref[f'flex_{i}'])
        if masked:
            yield f'flexible {i} masked', rel_err(gen.apply(v, z, channel_masks=np.asarray(ch)), ref[f'flex_{i}'])
    yield 'mixing+truncation', rel_err(gen.apply(v, ref['z2'], inject_index=3, truncation=0.7,
                                                 truncation_style=ref['tstyle']), ref['mix'])
    yield 'mixing+truncation ratio 0.5', rel_err(gen.apply(v, ref['z2'], inject_index=2, truncation=0.5,
                                                           truncation_style=ref['tstyle'], channel_ratio=0.5),
                                                 ref['mix_half'])
    yield 'w+ input', rel_err(gen.apply(v, ref['wplus'], input_is_style=True), ref['wplus_out'])


def discriminator_errors(pt_path, npz_path):
    ref = np.load(npz_path)
    ckpt = convert.load_torch_file(pt_path)
    for name in ('d_mod', 'd_multi', 'd_plain'):
        if name not in ckpt:
            continue
        disc, dv = convert.original.discriminator_from_state_dict(ckpt[name])
        for k in ref.files:
            if not k.startswith(name + '_x_'):
                continue
            b, r = k.split('_')[-2:]
            args = (ref[f'{name}_arch_{b}_{r}'],) if name == 'd_mod' else ()
            yield f'{name} batch={b} res={r}', rel_err(disc.apply(dv, ref[k].transpose(0, 2, 3, 1), *args),
                                                       ref[f'{name}_y_{b}_{r}'])
