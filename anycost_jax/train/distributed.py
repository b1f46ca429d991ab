"""Multi-host JAX set-up: call :func:`initialize` first, before anything else touches JAX.

One Python process runs per host (TPU VM worker, SLURM task, MPI rank). :func:`initialize`
decides from its arguments and the environment whether this process is part of a cluster:

* explicit ``coordinator_address``, ``num_processes`` and ``process_id`` (all three, or none):
  ``jax.distributed.initialize`` with them;
* otherwise a cluster found in the environment, checked in the order JAX 0.10.2's own detectors
  (``jax._src.clusters``) check them, with the variables they read:

  - Open MPI (``mpirun``): ``OMPI_COMM_WORLD_SIZE`` > 1; JAX reads the rank from
    ``OMPI_COMM_WORLD_RANK`` / ``OMPI_COMM_WORLD_LOCAL_RANK`` and the coordinator host from
    ``OMPI_MCA_orte_hnp_uri`` (set by Open MPI 4; Open MPI 5 does not set it, pass the
    coordinator explicitly there);
  - SLURM (``srun``): ``SLURM_JOB_ID`` and ``SLURM_NTASKS`` > 1; JAX also needs
    ``SLURM_STEP_NODELIST``, ``SLURM_PROCID`` and ``SLURM_LOCALID``, which only ``srun`` sets;
  - a multi-host TPU slice: ``TPU_PROCESS_ADDRESSES`` or ``TPU_WORKER_HOSTNAMES`` listing more
    than one host (GKE), or multislice ``MEGASCALE_COORDINATOR_ADDRESS`` /
    ``MEGASCALE_NUM_SLICES`` > 1;

  then ``jax.distributed.initialize()`` with no arguments, i.e. JAX's auto-detection;
* otherwise a single process: nothing is initialized.

A TPU VM pod made with ``gcloud compute tpus tpu-vm create`` keeps its worker list in the GCE
metadata server, not in the environment; JAX's ``GceTpuCluster`` queries it. Set
``ANYCOST_DISTRIBUTED=1`` there (``launch/tpu_pod.sh`` does) to call
``jax.distributed.initialize()`` regardless of the environment; ``ANYCOST_DISTRIBUTED=0``
forces a single process even inside a cluster.

One process per *node* on GPUs: JAX's SLURM and Open MPI detectors make a process see only the
GPU numbered by its local rank (they assume one process per GPU). When a node runs a single
task, :func:`initialize` passes every GPU of the node as ``local_device_ids`` instead
(``SLURM_GPUS_ON_NODE``, else ``CUDA_VISIBLE_DEVICES``, else the ``/dev/nvidiaN`` devices).

On a CPU host, :func:`split_cpu_cores` (before JAX starts, with the launcher's
``--cpu_devices=0`` or N > 1) makes XLA show one CPU device per core, counting only devices
that keep every per-device batch a multiple of 4 (whole minibatch-stddev groups). It is not
the default: on a CPU mesh the step programs wait for their results, so it gains no speed
(``benchmarks/README.md``). It is harmless where an accelerator runs the program.

The detection helpers are pure functions of an environment mapping so they can be tested.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Mapping, Optional, Sequence

FORCE_VAR = 'ANYCOST_DISTRIBUTED'
_TRUE, _FALSE = ('1', 'true', 'yes', 'on'), ('0', 'false', 'no', 'off')


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A multi-process environment found in the environment variables."""
    name: str                          # 'ompi', 'slurm', 'tpu' or 'forced'
    evidence: str                      # the variables that identified it, for messages
    num_processes: Optional[int] = None
    process_id: Optional[int] = None
    missing: tuple[str, ...] = ()      # variables JAX's detector reads that are absent
    local_device_ids: Optional[tuple[int, ...]] = None  # all GPUs of a one-task node

    def describe(self) -> str:
        pid = '?' if self.process_id is None else self.process_id
        procs = f', process {pid} of {self.num_processes}' if self.num_processes else ''
        return f'{LABELS[self.name]} ({self.evidence}{procs})'


LABELS = {'ompi': 'Open MPI', 'slurm': 'SLURM', 'tpu': 'multi-host TPU',
          'forced': 'requested by the environment'}


def _int(env: Mapping[str, str], key: str) -> Optional[int]:
    try:
        return int(env[key])
    except (KeyError, ValueError):
        return None


def _hosts(text: str) -> list[str]:
    return [h for h in (p.strip() for p in text.split(',')) if h]


def count_visible_gpus(env: Mapping[str, str]) -> Optional[int]:
    """GPUs this node gives the job, from SLURM or ``CUDA_VISIBLE_DEVICES``; None when unknown."""
    n = _int(env, 'SLURM_GPUS_ON_NODE')
    if n:
        return n
    visible = env.get('CUDA_VISIBLE_DEVICES')
    if visible is not None and visible.strip() not in ('', '-1', 'NoDevFiles'):
        return len(_hosts(visible))
    return None


def detect_ompi(env: Mapping[str, str], n_local_gpus: Optional[int] = None) -> Optional[Cluster]:
    size = _int(env, 'OMPI_COMM_WORLD_SIZE')
    if not size or size <= 1:
        return None
    missing = tuple(k for k in ('OMPI_MCA_orte_hnp_uri', 'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK')
                    if k not in env)
    one_per_node = _int(env, 'OMPI_COMM_WORLD_LOCAL_SIZE') == 1
    gpus = count_visible_gpus(env) or n_local_gpus
    return Cluster('ompi', f'OMPI_COMM_WORLD_SIZE={size}', size, _int(env, 'OMPI_COMM_WORLD_RANK'), missing,
                   tuple(range(gpus)) if one_per_node and gpus else None)


def detect_slurm(env: Mapping[str, str], n_local_gpus: Optional[int] = None) -> Optional[Cluster]:
    ntasks = _int(env, 'SLURM_NTASKS')
    if 'SLURM_JOB_ID' not in env or not ntasks or ntasks <= 1:
        return None
    missing = tuple(k for k in ('SLURM_STEP_NODELIST', 'SLURM_PROCID', 'SLURM_LOCALID') if k not in env)
    nodes = _int(env, 'SLURM_STEP_NUM_NODES') or _int(env, 'SLURM_JOB_NUM_NODES') or _int(env, 'SLURM_NNODES')
    gpus = count_visible_gpus(env) or n_local_gpus
    return Cluster('slurm', f'SLURM_JOB_ID={env["SLURM_JOB_ID"]}, SLURM_NTASKS={ntasks}', ntasks,
                   _int(env, 'SLURM_PROCID'), missing, tuple(range(gpus)) if nodes == ntasks and gpus else None)


def detect_tpu(env: Mapping[str, str]) -> Optional[Cluster]:
    if env.get('MEGASCALE_COORDINATOR_ADDRESS'):
        return Cluster('tpu', 'MEGASCALE_COORDINATOR_ADDRESS (multislice)')
    slices = _int(env, 'MEGASCALE_NUM_SLICES')
    if slices and slices > 1:
        return Cluster('tpu', f'MEGASCALE_NUM_SLICES={slices}')
    for key in ('TPU_PROCESS_ADDRESSES', 'TPU_WORKER_HOSTNAMES'):  # JAX's GkeTpuCluster order
        if key in env:
            hosts = _hosts(env[key])
            if len(hosts) > 1:
                return Cluster('tpu', f'{key} lists {len(hosts)} hosts', len(hosts), _int(env, 'TPU_WORKER_ID'))
            return None  # the first one set decides, as in JAX
    return None


def detect_cluster(env: Mapping[str, str], n_local_gpus: Optional[int] = None) -> Optional[Cluster]:
    """The multi-process environment in ``env``, or None for a single process.

    ``ANYCOST_DISTRIBUTED`` overrides: true -> ``Cluster('forced')``, false -> None.
    ``n_local_gpus``: GPUs on this node when the environment does not say (one-task nodes only).
    """
    force = env.get(FORCE_VAR, '').strip().lower()
    if force in _FALSE:
        return None
    if force and force not in _TRUE:
        raise ValueError(f'{FORCE_VAR}={env[FORCE_VAR]!r}; expected 1/true/yes/on or 0/false/no/off')
    found = detect_ompi(env, n_local_gpus) or detect_slurm(env, n_local_gpus) or detect_tpu(env)
    if force in _TRUE and found is None:
        return Cluster('forced', f'{FORCE_VAR}={env[FORCE_VAR]}')
    return found


def check_explicit(coordinator_address: Optional[str], num_processes: Optional[int],
                   process_id: Optional[int]) -> bool:
    """True when all three are given, False when none is; a partial set raises ValueError."""
    given = {'coordinator_address': coordinator_address, 'num_processes': num_processes, 'process_id': process_id}
    missing = [k for k, v in given.items() if v is None]
    if missing and len(missing) < len(given):
        raise ValueError(f'explicit multi-host set-up needs coordinator_address, num_processes and process_id '
                         f'together; missing: {", ".join(missing)} (or pass none of them to auto-detect)')
    if not missing:
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ValueError(f'process_id={process_id} must be in [0, num_processes={num_processes})')
        if ':' not in coordinator_address:
            raise ValueError(f'coordinator_address={coordinator_address!r} must be host:port')
    return not missing


def _explicit_hint(cluster: Optional[Cluster]) -> str:
    n = cluster.num_processes if cluster and cluster.num_processes else 'N'
    i = cluster.process_id if cluster and cluster.process_id is not None else 'I'
    return (f'pass --coordinator_address=HOST0:PORT --num_processes={n} --process_id={i} explicitly '
            f'(HOST0: the host of process 0; PORT: any free port, the same on every process)')


def _local_gpu_devices() -> Optional[int]:
    n = len([p for p in glob.glob('/dev/nvidia*') if re.fullmatch(r'/dev/nvidia\d+', p)])
    return n or None


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge
        return xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):
        return False


CPU_DEVICES_FLAG = '--xla_force_host_platform_device_count'
MAX_CPU_DEVICES = 8


def cpu_devices_for(batch_sizes: Sequence[int], cores: int) -> int:
    """How many CPU devices to split ``cores`` into: the most (at most ``MAX_CPU_DEVICES``) that cut
    every global batch in ``batch_sizes`` into per-device batches that are multiples of 4; else 1."""
    for n in range(min(cores, MAX_CPU_DEVICES), 1, -1):
        if all(b % (4 * n) == 0 for b in batch_sizes):
            return n
    return 1


def split_cpu_cores(batch_sizes: Sequence[int], requested: int = 0, env: Optional[Mapping[str, str]] = None,
                    cores: Optional[int] = None) -> str:
    """Sets ``XLA_FLAGS`` in ``env`` so the CPU backend has one device per core; returns what it did.

    ``requested``: 0 chooses with :func:`cpu_devices_for`, 1 leaves one device, N > 1 asks for N.
    A device count already in ``XLA_FLAGS`` is kept. For a single process only (the launcher does
    not call it in a multi-process run, whose devices are the cluster's); must run before JAX
    starts its backends.
    """
    env = os.environ if env is None else env
    flags = env.get('XLA_FLAGS', '')
    if CPU_DEVICES_FLAG in flags:
        return f'CPU devices: as XLA_FLAGS sets them ({flags.strip()})'
    if cores is None:  # the cores this process may run on (taskset, cgroups), not the machine's
        cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    n = requested or cpu_devices_for(batch_sizes, cores)
    bad = [b for b in batch_sizes if b % n]
    if bad:
        raise ValueError(f'--cpu_devices={n} does not divide the global batch {bad[0]}; choose a divisor of it, '
                         f'or 0 to choose automatically')
    if n == 1 and requested == 1:
        return f'CPU devices: 1 ({cores} cores; --cpu_devices=0 would split them into data-parallel devices)'
    if n == 1:
        return f'CPU devices: 1 ({cores} cores; no split keeps per-device batches of multiples of 4)'
    env['XLA_FLAGS'] = f'{flags} {CPU_DEVICES_FLAG}={n}'.strip()
    return (f'CPU devices: {cores} cores as {n} XLA devices ({CPU_DEVICES_FLAG}={n}; data-parallel where the '
            f'program runs on the CPU); --cpu_devices=1 (the default) keeps one')


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, local_device_ids: Optional[Sequence[int]] = None,
               env: Optional[Mapping[str, str]] = None) -> str:
    """Sets up multi-host JAX (see the module docstring); returns a one-line description of what it did.

    Must run before any JAX computation or device query. ``local_device_ids``: the devices this
    process drives (GPU set-ups; default: JAX's choice, or every GPU of a one-task node).
    ``env``: the environment to detect from (default ``os.environ``).
    """
    import jax

    env = os.environ if env is None else env
    if jax.distributed.is_initialized():
        return 'jax.distributed already initialized; nothing done'
    explicit = check_explicit(coordinator_address, num_processes, process_id)
    ids = None if local_device_ids is None else [int(i) for i in local_device_ids]
    if explicit:
        cluster, kwargs = None, dict(coordinator_address=coordinator_address, num_processes=num_processes,
                                     process_id=process_id)
        what = ', '.join(f'{k}={v!r}' for k, v in kwargs.items())
    else:
        cluster = detect_cluster(env, n_local_gpus=_local_gpu_devices())
        if cluster is None:
            return 'single process: no coordinator given and no multi-host cluster in the environment'
        if cluster.missing:
            raise RuntimeError(
                f'found {cluster.describe()}, but JAX\'s {LABELS[cluster.name]} detection also needs '
                f'{", ".join(cluster.missing)}, which are unset'
                + (' (run the program with srun inside the allocation)' if cluster.name == 'slurm' else '')
                + f'; or {_explicit_hint(cluster)}')
        kwargs = {}
        if ids is None and cluster.local_device_ids is not None:
            ids = list(cluster.local_device_ids)  # one task per node: all its GPUs, not only the local rank's
        what = f'auto-detected {cluster.describe()}'
    if ids is not None:
        kwargs['local_device_ids'] = ids
        what += f', local_device_ids={ids}'
    if _backends_initialized():
        raise RuntimeError('distributed.initialize() must run before any other JAX call (a backend is already '
                           'initialized): call it first in main()')
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as e:  # noqa: BLE001 -- re-raised with what to do instead
        where = f'the detected cluster, {cluster.describe()}' if cluster else 'the explicit arguments'
        hint = _explicit_hint(cluster) if cluster else 'check that HOST:PORT is reachable from every process'
        cause = f'{type(e).__name__}: {str(e).rstrip(".")}'
        raise RuntimeError(f'jax.distributed.initialize() failed for {where}: {cause}. '
                           f'To set it up by hand, {hint}; to run as one process, set {FORCE_VAR}=0') from e
    if cluster is None:
        return f'jax.distributed.initialize({what}): process {process_id} of {num_processes}'
    return f'jax.distributed.initialize() with JAX\'s auto-detection: {what}'
