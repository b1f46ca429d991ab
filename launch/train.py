r"""Trains an Anycost GAN stage from an ``ml_collections`` config (Flax-examples style launcher).

    python launch/train.py --config=configs/ffhq.py:anycost --workdir=DIR [--config.batch_size=...]

``--config`` is a config file (``path.py`` or ``path.py:arg``; ``--config.KEY=VALUE`` overrides a
field), ``--workdir`` receives checkpoints and summaries (a ``gs://`` bucket on a TPU pod: every
host must see the same directory). Run one copy of this program per host; multi-host set-up:

* nothing to pass on a single host (on a CPU, ``--cpu_devices`` can split its cores into
  data-parallel XLA devices);
* TPU pod: ``launch/tpu_pod.sh`` runs it on every worker with ``ANYCOST_DISTRIBUTED=1``;
* SLURM: ``sbatch launch/gpu_slurm.sh`` (one task per node, under ``srun``); Open MPI: ``mpirun``;
* anything else: ``--coordinator_address=HOST0:PORT --num_processes=N --process_id=I`` on every host.

See :mod:`anycost_jax.train.distributed` for the detection rules.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from anycost_jax import cli
from anycost_jax.train import distributed

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training configuration file (path.py or path.py:arg).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints and summaries (gs:// on a TPU pod).')
flags.DEFINE_string('coordinator_address', None, 'Multi-host: HOST:PORT of process 0 (default: auto-detect).')
flags.DEFINE_integer('num_processes', None, 'Multi-host: number of processes (with --coordinator_address).')
flags.DEFINE_integer('process_id', None, 'Multi-host: index of this process (with --coordinator_address).')
flags.DEFINE_list('local_device_ids', None, 'Multi-host GPU: the local devices this process drives '
                  '(default: one per process under SLURM/MPI, all GPUs when a node runs one task).')
flags.DEFINE_integer('cpu_devices', 1, 'Single process: XLA CPU devices to split the cores into for the '
                     'data-parallel step (1: no split; 0: as many as keep per-device batches multiples of 4, up '
                     'to 8). Matters only where the program runs on the CPU.')
flags.mark_flags_as_required(['config', 'workdir'])


def _hide_gpus_from_tf():
    """TF (the input pipeline) must not grab GPU memory meant for JAX; only if it is loaded anyway."""
    tf = sys.modules.get('tensorflow')
    if tf is not None:
        try:
            tf.config.experimental.set_visible_devices([], 'GPU')
        except RuntimeError as e:  # TF already initialized its devices
            logging.warning('could not hide GPUs from TensorFlow: %s', e)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    path = config_flags.get_config_filename(FLAGS['config'])
    if not os.path.isfile(path.split(':')[0]):  # (ml_collections says so at length)
        raise cli.UserError(f'--config={path}: no such config file; pass one of configs/, e.g. '
                            f'--config=configs/demo.py or --config=configs/ffhq.py:anycost')
    config = FLAGS.config
    config.keys()  # a config file that failed to load raises here, before any set-up
    ids = [int(i) for i in FLAGS.local_device_ids] if FLAGS.local_device_ids else None
    # First, before anything else touches JAX.
    if FLAGS.coordinator_address is None and distributed.detect_cluster(os.environ) is None:
        from anycost_jax.train import config_lib
        batches = [c.batch_size for _, c in config_lib.stage_configs(config)]
        logging.info('%s', distributed.split_cpu_cores(batches, FLAGS.cpu_devices))
    elif FLAGS.cpu_devices != 1:
        raise app.UsageError('--cpu_devices is for a single process; a multi-process run uses its devices as they are')
    logging.info('distributed: %s', distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                                                           FLAGS.process_id, local_device_ids=ids))
    import jax

    _hide_gpus_from_tf()
    logging.info('JAX process: %d / %d', jax.process_index(), jax.process_count())
    logging.info('JAX devices: %d global, %d local: %r', jax.device_count(), jax.local_device_count(),
                 jax.local_devices())

    from anycost_jax.train import trainer  # imports TF (input pipeline), so after the set-up above
    _hide_gpus_from_tf()
    trainer.train_and_evaluate(config, FLAGS.workdir)


if __name__ == '__main__':
    cli.run(main, outputs=('workdir',))
