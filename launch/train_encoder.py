r"""Trains a ResNet-50 encoder (images -> w+) on samples of a frozen generator.

  python launch/train_encoder.py --config=configs/encoder.py \
      --config.generator=anycost-ffhq-config-f.pt --workdir=runs/encoder
  python launch/train_encoder.py --config=configs/encoder.py --config.generator=models/ffhq \
      --config.init=encoder_anycost-ffhq-config-f.pt --config.steps=5000 --workdir=runs/encoder

The fields (steps, batch size, loss weights, ...) are ``configs/encoder.py``'s. Rerunning with
the same --workdir resumes from its latest checkpoint, and is refused if it changes the run
(the batch, the losses, the architecture or the generator). The encoder is written to WORKDIR/encoder
(load it with ``convert.load_encoder``); ``--config.export_pt`` also writes the original's
``{'state_dict': ...}`` format.
"""
import dataclasses
import os

from absl import app, flags, logging
from ml_collections import config_flags

from anycost_jax import cli, convert
from anycost_jax.editing import encoder_training as et

config_flags.DEFINE_config_file('config', 'configs/encoder.py', 'The encoder training config.')
flags.DEFINE_string('workdir', None, 'Checkpoints and the trained encoder go here; an existing run resumes.')
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    config = FLAGS.config
    if not config.generator or not FLAGS.workdir:
        raise app.UsageError('--config.generator and --workdir are required')
    if not FLAGS['verbosity'].present:  # orbax logs every step of a save at INFO
        logging.set_verbosity(logging.WARNING)
    gen, g_vars = convert.load_generator(config.generator)
    init = convert.load_encoder(config.init) if config.init else None
    fields = {f.name for f in dataclasses.fields(et.EncoderTrainConfig)}
    enc, variables, history = et.train_encoder(gen, g_vars, FLAGS.workdir, init=init,
                                               **{k: v for k, v in config.items() if k in fields})
    if history:
        print(f'final loss {history[-1]["loss"]:.4f}; encoder in {os.path.join(FLAGS.workdir, et.ENCODER_DIR)}')
    if config.export_pt:
        convert.save_original_encoder(config.export_pt, enc, variables)
        print(f'wrote {config.export_pt} (original format)')


if __name__ == '__main__':
    cli.run(main, outputs=('workdir',))
