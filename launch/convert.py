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
(and such a directory, e.g. a training workdir, is accepted as ``--input``; a stage workdir's
generator is its latest checkpoint's EMA). A generator written to our format carries
``stats/w_avg`` (the mean w over 10k samples) so ``truncation < 1`` works without a style.
"""
from __future__ import annotations

from absl import app, flags, logging

from anycost_jax import cli, convert

WHAT = convert.KINDS + ('both',)

FLAGS = flags.FLAGS
flags.DEFINE_string('input', None, 'original .pt file, http(s) URL of one, one of our model directories, or a '
                    'training workdir')
flags.DEFINE_string('output', None, 'our model directory to write, or a path ending in .pt to export to the '
                    'original PyTorch format')
flags.DEFINE_enum('what', 'generator', WHAT, 'which model(s) to convert')
flags.DEFINE_string('key', None, 'checkpoint key of the model: default g_ema (generator) / d (discriminator); '
                    'with --what both, "G" picks the generator key only, "G,D" both')


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not FLAGS.input or not FLAGS.output:
        raise app.UsageError('--input and --output are required')
    if not FLAGS['verbosity'].present:  # orbax logs every step of a save at INFO
        logging.set_verbosity(logging.WARNING)
    convert.convert_checkpoint(FLAGS.input, FLAGS.output, FLAGS.what, FLAGS.key)


if __name__ == '__main__':
    cli.run(main, outputs=('output',))
