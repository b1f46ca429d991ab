r"""Applies an image-to-image generator to a folder of images (or SPADE label maps).

  python launch/translate.py --generator=latest_net_G.pth --netG=mobile_resnet_9blocks --input=photos/ --outdir=out
  python launch/translate.py --generator=supernet_G.pth --netG=super_mobile_resnet_9blocks \
      --config=16_16_32_16_32_32_16_16 --input=photos/ --outdir=out
  python launch/translate.py --generator=latest_net_G.pth --netG=spade --crop_size=512 --aspect_ratio=2 \
      --num_upsampling_layers=more --input=labels/ --outdir=out

--generator is a gan-compression .pth (then --netG names its architecture, and SPADE needs the
options its weights do not fix) or one of our model directories. Writes one PNG per input
(same name) and prints the generator's MACs (torchprofile 0.0.1's count, gan-compression's
figures) and its latency per batch.
"""
import os

import numpy as np
from absl import flags

from anycost_jax import cli, convert, render, translate
from anycost_jax.convert import img2img as img2img_convert
from anycost_jax.models.img2img.spade import SPADEGenerator

flags.DEFINE_string('generator', None, 'A gan-compression generator .pth, our model directory, or an http(s) URL.')
flags.DEFINE_string('netG', None, f'For a .pth: its architecture, one of {list(img2img_convert.NETGS)}.')
flags.DEFINE_string('config', None, 'A sub-network of a supernet, e.g. 16_16_32_16_32_32_16_16 (default: full).')
flags.DEFINE_list('input', None, 'Image files or folders of them (for SPADE: label maps of class indices).')
flags.DEFINE_string('outdir', 'translated', 'Where the outputs go (one PNG per input, the same name).')
flags.DEFINE_integer('size', None, 'Resize inputs to SIZE x SIZE first (ResNet / U-Net; default: as they are).')
flags.DEFINE_integer('batch_size', 4, 'Images per call.')
flags.DEFINE_integer('crop_size', None, 'SPADE .pth: the crop_size it was trained with.')
flags.DEFINE_float('aspect_ratio', 1., 'SPADE .pth: width / height of its outputs.')
flags.DEFINE_string('num_upsampling_layers', None, 'SPADE .pth: normal, more or most.')
flags.DEFINE_integer('label_classes', None, 'SPADE: classes in the label maps, when label_nc also counts other '
                     'channels (e.g. instance edges, left at zero here); default label_nc.')
FLAGS = flags.FLAGS


def _hparams(netG):
    if netG in img2img_convert.SPADE_NETGS:
        return dict(crop_size=FLAGS.crop_size, num_upsampling_layers=FLAGS.num_upsampling_layers,
                    aspect_ratio=FLAGS.aspect_ratio)
    return {}


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f'unexpected arguments: {argv[1:]}')
    if not FLAGS.generator or not FLAGS.input:
        raise cli.UserError('--generator and --input are required')
    if FLAGS.batch_size < 1:
        raise cli.UserError(f'--batch_size={FLAGS.batch_size} must be at least 1')
    paths = cli.image_files(FLAGS.input, '--input')
    names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(names)) < len(names):
        raise cli.UserError(f'--input: two inputs share the name {next(n for n in names if names.count(n) > 1)!r}; '
                            'their outputs would overwrite each other')
    gen, variables = convert.load_img2img_generator(FLAGS.generator, FLAGS.netG, **_hparams(FLAGS.netG))
    spade = isinstance(gen, SPADEGenerator)
    size = translate.input_size(gen, FLAGS.size)
    read = (lambda p: translate.read_label_map(p, gen, FLAGS.label_classes)) if spade else \
        (lambda p: translate.read_image(p, gen, size))
    inputs = [read(p) for p in paths]  # every file is checked before anything runs
    shapes = {x.shape for x in inputs}
    if len(shapes) > 1:
        raise cli.UserError(f'--input: the images have different sizes {sorted(shapes)}; pass --size=N')
    run = translate.translator(gen, variables, FLAGS.config)
    x0 = np.stack(inputs[:FLAGS.batch_size])
    n_macs = translate.generator_macs(gen, x0.shape, FLAGS.config)
    ms = render.latency_ms(run, x0)
    os.makedirs(FLAGS.outdir, exist_ok=True)
    for i in range(0, len(inputs), FLAGS.batch_size):
        out = np.asarray(run(np.stack(inputs[i:i + FLAGS.batch_size])))
        for name, img in zip(names[i:i + FLAGS.batch_size], out):
            translate.save_png(os.path.join(FLAGS.outdir, name + '.png'), img)
    label = FLAGS.config or 'full'
    print(f'{type(gen).__name__} ({label}): {n_macs / 1e9:.3f} GMACs per image (torchprofile 0.0.1), '
          f'{ms:.1f} ms per batch of {len(x0)} ({x0.shape[1]}x{x0.shape[2]}); wrote {len(inputs)} images to '
          f'{FLAGS.outdir}')


if __name__ == '__main__':
    cli.run(main, outputs=('outdir',))
