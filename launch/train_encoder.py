r"""Trains a ResNet-50 encoder (images -> w+) on samples of a frozen generator.

  python launch/train_encoder.py --generator=anycost-ffhq-config-f.pt --workdir=runs/encoder \
      --steps=100000 --batch_size=8 --lr=1e-4
  python launch/train_encoder.py --generator=models/ffhq --workdir=runs/encoder \
      --init=encoder_anycost-ffhq-config-f.pt --steps=5000          # fine-tune an original encoder
  python launch/train_encoder.py --generator=models/ffhq --workdir=runs/encoder --export_pt=enc.pt

Loss: LPIPS-VGG (at min(--lpips_res, resolution)) + --mse_weight x pixel MSE, through the frozen
generator, + --latent_weight x MSE to the true w+ (see anycost_jax/editing/encoder_training.py).
Rerunning with the same --workdir resumes from its latest checkpoint. The encoder is written to
WORKDIR/encoder (load it with ``convert.load_encoder``); --export_pt also writes the original's
``{'state_dict': ...}`` format. The trunk starts from scratch unless --init is given.
"""
import os

from absl import app, flags, logging

from anycost_jax import convert
from anycost_jax.editing import encoder_training as et

D = et.EncoderTrainConfig()
flags.DEFINE_string('generator', None, 'Generator: original .pt, our model directory, or an http(s) URL.')
flags.DEFINE_string('workdir', None, 'Checkpoints and the trained encoder go here; an existing run resumes.')
flags.DEFINE_string('init', None, 'Optional initial encoder: original encoder .pt, our directory, or a URL.')
flags.DEFINE_integer('steps', D.steps, 'Total training steps.')
flags.DEFINE_integer('batch_size', D.batch_size, 'Images per step.')
flags.DEFINE_float('lr', D.lr, 'Adam learning rate.')
flags.DEFINE_integer('lpips_res', D.lpips_res, 'LPIPS resolution (at most the generator resolution).')
flags.DEFINE_float('lpips_weight', D.lpips_weight, 'Weight of the LPIPS-VGG loss.')
flags.DEFINE_float('mse_weight', D.mse_weight, 'Weight of the pixel MSE.')
flags.DEFINE_float('latent_weight', D.latent_weight, 'Weight of the MSE to the true w+.')
flags.DEFINE_float('mixing_prob', D.mixing_prob, 'Probability of style-mixed (w+) training codes.')
flags.DEFINE_float('sub_generator_prob', D.sub_generator_prob,
                   'Probability that the reconstruction goes through a random uniform-width sub-generator.')
flags.DEFINE_integer('save_every', D.save_every, 'Checkpoint and encoder export interval (steps).')
flags.DEFINE_integer('seed', D.seed, 'Random seed.')
flags.DEFINE_string('export_pt', None, 'Also write the trained encoder in the original .pt format here.')
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not FLAGS.generator or not FLAGS.workdir:
        raise app.UsageError('--generator and --workdir are required')
    if not FLAGS['verbosity'].present:  # orbax logs every step of a save at INFO
        logging.set_verbosity(logging.WARNING)
    gen, g_vars = convert.load_generator(FLAGS.generator)
    init = convert.load_encoder(FLAGS.init) if FLAGS.init else None
    names = ('steps', 'batch_size', 'lr', 'lpips_res', 'lpips_weight', 'mse_weight', 'latent_weight', 'mixing_prob',
             'sub_generator_prob', 'save_every', 'seed')
    enc, variables, history = et.train_encoder(gen, g_vars, FLAGS.workdir, init=init,
                                               **{n: getattr(FLAGS, n) for n in names})
    if history:
        print(f'final loss {history[-1]["loss"]:.4f}; encoder in {os.path.join(FLAGS.workdir, et.ENCODER_DIR)}')
    if FLAGS.export_pt:
        convert.save_original_encoder(FLAGS.export_pt, enc, variables)
        print(f'wrote {FLAGS.export_pt} (original format)')


if __name__ == '__main__':
    app.run(main)
