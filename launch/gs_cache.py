r"""Caches a GAN Slimming teacher's outputs over the training set (the upstream has no script for this).

    python launch/gs_cache.py --config=configs/shapes_img2img.py:gs32 --config.teacher=runs/shapes_cyclegan \
        --output=runs/shapes_teacher_cache.npz

Then train with ``--config.teacher_cache=<output>``; the stage refuses a cache whose dataset, split,
resolution, direction, example count or inputs differ from its config's
(:func:`anycost_jax.train.gan_slimming.cache_teacher_outputs`).
"""
from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'A gan_slimming config (path.py:arg).', lock_config=True)
flags.DEFINE_string('output', None, 'The cache file (.npz).')
flags.DEFINE_integer('batch_size', 16, 'Teacher batch size.')
flags.mark_flags_as_required(['config', 'output'])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    from anycost_jax.train import gan_slimming
    if FLAGS.config.get('family') != 'gan_slimming':
        raise app.UsageError(f'--config is a {FLAGS.config.get("family")!r} config; pass a gan_slimming one, e.g. '
                             'configs/shapes_img2img.py:gs32')
    print(gan_slimming.cache_teacher_outputs(FLAGS.config, FLAGS.output, FLAGS.batch_size))


if __name__ == '__main__':
    app.run(main)
