r"""Evaluates a generator checkpoint at every (width, resolution): FID, consistency, PPL, MACs.

  python launch/evaluate.py --checkpoint=runs/demo/generator --metrics=fid,consistency,macs \
      --stats='stats/shapes_{res}.npz' --dataset=anycost_shapes --n_fid=10000
  python launch/evaluate.py --checkpoint=anycost-ffhq-config-f.pt --metrics=fid \
      --stats='stats/ffhq_{res}.npz' --dataset=ffhq --manual_dir=~/data/ffhq --resolutions=1024,512

--checkpoint is an original .pt, one of our model directories, a URL, or a training work
directory (a stage's latest EMA generator, a pipeline's final export; as every launcher). The
FID Inception weights are fetched before anything else (--inception: a local copy, offline).
Real statistics (--stats, one file per resolution) missing on disk are computed from --dataset
and saved there. Prints a table per
(width, resolution), writes it as JSON (--output), and with --workdir writes TensorBoard scalars
``eval/{metric}/{config}`` at --step.

Image-to-image generators (GAN Compression's metrics and protocols): --img2img_config names the
training config whose held-out split (its data_dir / manual_dir, preprocessing) is scored, and
--checkpoint is a gan-compression generator .pth (with --netG) or one of our model directories.
Metrics: fid (outputs truncated to uint8, pytorch-fid's Inception; CycleGAN against the target
domain's train + test images) and miou (Cityscapes: DRN-D-105, --drn=drn-d-105_ms_cityscapes.pth
from http://go.yf.io/drn-cityscapes-models):

  python launch/evaluate.py --img2img_config=configs/cityscapes.py:gaugan --checkpoint=runs/gaugan/export/generator \
      --img2img_config.data_dir=~/tensorflow_datasets --metrics=miou,fid --drn=drn-d-105_ms_cityscapes.pth
"""
import json
import os

from absl import app, flags
from ml_collections import config_flags

from anycost_jax import cli, convert, elastic
from anycost_jax.eval import evaluate as ev

flags.DEFINE_string('checkpoint', None, f'The generator: {cli.GENERATOR_SOURCES}.')
flags.DEFINE_list('metrics', ['fid', 'consistency', 'macs'], f'Any of {", ".join(ev.METRICS)}.')
flags.DEFINE_list('ratios', [str(r) for r in elastic.RATIOS[::-1]], 'Uniform channel ratios evaluated.')
flags.DEFINE_list('resolutions', None, 'Output resolutions evaluated (default: the trained ones; the four '
                  'highest for a generator that does not record them).')
flags.DEFINE_string('stats', None, 'Real statistics per resolution, with {res}: e.g. stats/ffhq_{res}.npz.')
flags.DEFINE_string('dataset', None, 'Makes missing statistics files from this dataset (see anycost_jax.data).')
flags.DEFINE_string('data_dir', None, 'TFDS data directory.')
flags.DEFINE_string('manual_dir', None, 'FFHQ: the folder or zip of images.')
flags.DEFINE_integer('source_resolution', None, 'Read real images at this size and area-downsample them to each '
                     'resolution, as the discriminator sees them (default: the generator resolution).')
flags.DEFINE_string('inception', None, "pytorch-fid's pt_inception-2015-12-05-6726825d.pth (file or URL); "
                    'default: downloaded once into $ANYCOST_CACHE (~/.cache/anycost_jax).')
flags.DEFINE_integer('n_fid', 50_000, 'Images for FID (fake, and real when statistics are made).')
flags.DEFINE_integer('n_ppl', 100_000, 'Path samples for PPL.')
flags.DEFINE_integer('n_consistency', 1000, 'Samples for the consistency distances.')
flags.DEFINE_integer('consistency_res', 256, 'consistency: both images are compared at this size (>= 16; the '
                     "original's 256; lower it for small models on CPU, where LPIPS-VGG at 256 is slow).")
flags.DEFINE_integer('batch_size', None, 'Global batch (default: from available memory for FID, 16 otherwise).')
flags.DEFINE_integer('seed', 0, 'Seeds z (shared by every config) and the real-image subset.')
flags.DEFINE_string('output', None, 'JSON file of the results.')
flags.DEFINE_string('workdir', None, 'Writes TensorBoard scalars here.')
flags.DEFINE_integer('step', 0, 'With --workdir: the step the scalars are written at.')
config_flags.DEFINE_config_file('img2img_config', None, 'An image-to-image training config (path.py:arg): '
                                'evaluates --checkpoint as its generator on its held-out split (metrics fid, miou).',
                                lock_config=False)
flags.DEFINE_string('netG', None, "Image-to-image .pth: gan-compression's --netG (our model directories need none).")
flags.DEFINE_string('drn', None, 'miou: the DRN-D-105 Cityscapes weights, drn-d-105_ms_cityscapes.pth '
                    '(http://go.yf.io/drn-cityscapes-models).')
flags.DEFINE_string('split', None, 'Image-to-image: the split evaluated (default: the config\'s test_split).')
FLAGS = flags.FLAGS


def main_img2img(config):
    from anycost_jax.convert import img2img as img2img_convert
    from anycost_jax.train import img2img
    metrics = FLAGS.metrics if FLAGS['metrics'].present else ['fid']
    config.drn = FLAGS.drn or config.get('drn', '')
    config.inception = FLAGS.inception or config.inception
    if 'miou' in metrics:  # a missing DRN file stops the run before the generator or the data are read
        from anycost_jax.convert import drn as drn_convert
        drn_convert.drn_weights(config.drn or None)
    hparams = {}
    if FLAGS.netG in img2img_convert.SPADE_NETGS:  # what a SPADE .pth does not fix: the config's
        hparams = dict(crop_size=config.resolution, num_upsampling_layers=config.num_upsampling_layers,
                       aspect_ratio=config.aspect_ratio)
    gen, variables = convert.load_img2img_generator(FLAGS.checkpoint, FLAGS.netG, **hparams)
    results = img2img.evaluate_generator(config, gen, variables, metrics, split=FLAGS.split,
                                         batch_size=FLAGS.batch_size or 1,
                                         stats_path=FLAGS.stats.replace('{direction}', config.direction)
                                         if FLAGS.stats else None)
    print('  '.join(f'{k} {v:.4g}' for k, v in results.items() if k != 'iou'), flush=True)
    return results


def main(argv):
    del argv
    if not FLAGS.checkpoint:
        raise app.UsageError(f'--checkpoint is required ({cli.GENERATOR_SOURCES})')
    if FLAGS.img2img_config is not None:
        results = main_img2img(FLAGS.img2img_config)
        if FLAGS.output:
            os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
            with open(FLAGS.output, 'w') as f:
                json.dump({'checkpoint': FLAGS.checkpoint, 'results': results}, f, indent=1)
            print(f'wrote {FLAGS.output}')
        return
    metrics = ev.check_metrics(FLAGS.metrics)
    try:
        ratios = [float(r) for r in FLAGS.ratios]
    except ValueError:
        raise cli.UserError(f'--ratios={",".join(FLAGS.ratios)}: expected numbers among {elastic.RATIOS}') from None
    if 'fid' in metrics and not FLAGS.stats:
        raise app.UsageError("--metrics has fid: pass --stats='DIR/NAME_{res}.npz' (and --dataset to make missing "
                             "ones)")
    inception = FLAGS.inception
    if 'fid' in metrics:  # a download that cannot happen (offline) fails now, not after minutes of work
        from anycost_jax.convert import inception as inception_lib
        inception = inception_lib.inception_weights(inception)
    gen, variables = convert.load_generator(FLAGS.checkpoint)
    configs = ev.grid(gen, ratios, [int(r) for r in FLAGS.resolutions] if FLAGS.resolutions else None)
    settings = ev.Settings(n_fid=FLAGS.n_fid, n_ppl=FLAGS.n_ppl, n_consistency=FLAGS.n_consistency,
                           batch_size=FLAGS.batch_size, seed=FLAGS.seed, stats=FLAGS.stats, dataset=FLAGS.dataset,
                           data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir,
                           inception=inception, consistency_res=FLAGS.consistency_res,
                           source_resolution=FLAGS.source_resolution or gen.resolution)
    print(f'generator: resolution {gen.resolution}, widths {gen.full_channels()}; '
          f'{len(configs)} configs; metrics {", ".join(metrics)}', flush=True)
    results = ev.evaluate(gen, variables, metrics, configs, settings)
    print(ev.format_table(results), flush=True)
    import jax
    if jax.process_index() != 0:
        return
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        with open(FLAGS.output, 'w') as f:
            json.dump({'checkpoint': FLAGS.checkpoint, 'metrics': metrics, 'results': results}, f, indent=1)
        print(f'wrote {FLAGS.output}')
    if FLAGS.workdir:
        from clu import metric_writers
        writer = metric_writers.create_default_writer(FLAGS.workdir)
        writer.write_scalars(FLAGS.step, ev.scalars(results))
        writer.flush()
        print(f'wrote TensorBoard scalars to {FLAGS.workdir} at step {FLAGS.step}')


if __name__ == '__main__':
    cli.run(main, outputs=('output', 'workdir'))
