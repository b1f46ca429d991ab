"""Convert Anycost GAN checkpoints: original ``.pt`` (file or URL) <-> our Orbax model directories.

Reads an original PyTorch checkpoint (``torch.save`` file, read without torch; a training
checkpoint with ``g_ema`` / ``g`` / ``d`` or a bare state dict), an ``http(s)`` URL of one
(downloaded once into ``$ANYCOST_CACHE``), or one of our model directories, and writes either
our model directory (``model.json`` + Orbax ``variables/``) or, for an output ending in
``.pt``, an original-format checkpoint that the PyTorch code loads. Run from the repository root::

    python -m launch.convert --input anycost-ffhq-config-f.pt --output models/ffhq --what both
    python -m launch.convert --input anycost-ffhq-config-f.pt --output models/ffhq_g --key g
    python -m launch.convert --input models/ffhq --output ffhq.pt --what both   # back to the original format

With ``--what both`` a directory output gets ``OUTPUT/generator`` and ``OUTPUT/discriminator``
(and such a directory is accepted as ``--input``). A generator written to our format carries
``stats/w_avg`` (the mean w over 10k samples) so ``truncation < 1`` works without a style.
"""
from __future__ import annotations

import os
import sys

if __package__ in (None, ''):  # run as a file (python launch/convert.py): make anycost_jax importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
from absl import app, flags, logging

from anycost_jax import convert, elastic
from anycost_jax.models.discriminator import DiscriminatorMultiRes
from anycost_jax.models.generator import Generator

WHAT = ('generator', 'discriminator', 'both')
DEFAULT_KEYS = {'generator': 'g_ema', 'discriminator': 'd'}
# Subdirectories of a directory written with --what both.
SUBDIRS = {'generator': 'generator', 'discriminator': 'discriminator'}

FLAGS = flags.FLAGS
flags.DEFINE_string('input', None, 'original .pt file, http(s) URL of one, or one of our model directories')
flags.DEFINE_string('output', None, 'our model directory to write, or a path ending in .pt to export to the '
                    'original PyTorch format')
flags.DEFINE_enum('what', 'generator', WHAT, 'which model(s) to convert')
flags.DEFINE_string('key', None, 'checkpoint key of the model: default g_ema (generator) / d (discriminator); '
                    'with --what both, "G" picks the generator key only, "G,D" both')


def _keys(what: str, key: str | None) -> dict[str, str]:
    if what not in WHAT:
        raise ValueError(f'what={what!r} is not supported; expected one of {WHAT}')
    kinds = ['generator', 'discriminator'] if what == 'both' else [what]
    given = [k.strip() for k in key.split(',')] if key else []
    if len(given) > len(kinds) or any(not k for k in given):
        raise ValueError(f'key={key!r}: expected {"one key" if len(kinds) == 1 else "G or G,D"} for what={what!r}')
    return {kind: given[i] if i < len(given) else DEFAULT_KEYS[kind] for i, kind in enumerate(kinds)}


def _input_for(path: str, kind: str) -> str:
    """``path`` itself, or its ``generator`` / ``discriminator`` subdirectory (a --what both output)."""
    sub = os.path.join(path, SUBDIRS[kind])
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, 'model.json')) and os.path.isdir(sub):
        return sub
    return path


def describe(module, variables) -> str:
    """One line: class, resolution, widths and parameter count."""
    n_params = sum(int(np.size(a)) for a in _leaves(variables.get('params', {})))
    if isinstance(module, Generator):
        widths = f'widths {module.full_channels()}, style_dim {module.style_dim}, n_mlp {module.n_mlp}'
    else:
        ch = elastic.channels_per_resolution(module.channel_multiplier, module.channel_max)
        res = elastic.resolutions_up_to(module.resolution)[::-1]
        widths = f'widths {[ch[r] for r in res]} (resolution {res[0]} -> 4)'
        if isinstance(module, DiscriminatorMultiRes):
            widths += f', inputs {list(module.input_resolutions)}, modulate {module.modulate}'
    return f'{type(module).__name__} {module.resolution}x{module.resolution}: {widths}; {n_params:,} parameters'


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


def convert_checkpoint(input: str, output: str, what: str = 'generator', key: str | None = None,
                       log=print) -> list[str]:
    """Loads ``what`` from ``input`` and writes it to ``output``; returns the paths written."""
    if not input or not output:
        raise ValueError(f'input={input!r} and output={output!r}: both are required')
    keys = _keys(what, key)
    to_pt = output.endswith('.pt')
    models = {}
    for kind, k in keys.items():
        src = _input_for(input, kind)
        if kind == 'generator':
            # w_avg is only kept in our format; the original stores no such thing
            module, variables = convert.load_generator(src, key=k, mean_style=not to_pt)
        else:
            module, variables = convert.load_discriminator(src, key=k)
        is_dir = os.path.isdir(src)
        log(f'found {kind} in {src}{"" if is_dir else f" (key {k!r})"}: {describe(module, variables)}')
        models[kind] = (module, variables)
    if to_pt:
        g, d = models.get('generator', (None, None)), models.get('discriminator', (None, None))
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        convert.save_original(output, generator=g[0], g_variables=g[1], discriminator=d[0], d_variables=d[1])
        log(f'wrote {" and ".join(keys)} to {output} (original format: '
            f'{", ".join(["g_ema"] * ("generator" in models) + ["d"] * ("discriminator" in models))})')
        return [output]
    written = []
    for kind, (module, variables) in models.items():
        dest = os.path.join(output, SUBDIRS[kind]) if what == 'both' else output
        written.append(convert.save_model(dest, module, variables))
        log(f'wrote {kind} to {written[-1]}')
    return written


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not FLAGS.input or not FLAGS.output:
        raise app.UsageError('--input and --output are required')
    if not FLAGS['verbosity'].present:  # orbax logs every step of a save at INFO
        logging.set_verbosity(logging.WARNING)
    try:
        convert_checkpoint(FLAGS.input, FLAGS.output, FLAGS.what, FLAGS.key)
    except (OSError, ValueError) as e:  # missing/unreadable/mismatched checkpoints: the message says it all
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    app.run(main)
