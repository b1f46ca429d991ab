"""Multi-host set-up: cluster detection on fake environments, the launcher, and the pod/SLURM scripts' dry runs."""
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from anycost_jax.train import distributed as dist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASH = shutil.which('bash')
needs_bash = pytest.mark.skipif(BASH is None, reason='bash is not installed')

SLURM_STEP = {'SLURM_JOB_ID': '4242', 'SLURM_STEP_NODELIST': 'node[001-002]', 'SLURM_PROCID': '1',
              'SLURM_LOCALID': '0'}


# ---------------------------------------------------------------------------------------- detection

def test_no_cluster():
    assert dist.detect_cluster({}) is None
    assert dist.detect_cluster({'HOME': '/root', 'CUDA_VISIBLE_DEVICES': '0,1'}) is None


def test_tpu_multi_host():
    c = dist.detect_cluster({'TPU_WORKER_HOSTNAMES': 'w-0,w-1,w-2,w-3', 'TPU_WORKER_ID': '2'})
    assert (c.name, c.num_processes, c.process_id, c.missing) == ('tpu', 4, 2, ())
    assert c.local_device_ids is None  # JAX never restricts TPU devices
    c = dist.detect_cluster({'TPU_PROCESS_ADDRESSES': '10.0.0.1:8476,10.0.0.2:8476'})
    assert c.name == 'tpu' and c.num_processes == 2
    assert dist.detect_cluster({'MEGASCALE_COORDINATOR_ADDRESS': '10.0.0.1:8080'}).name == 'tpu'
    assert dist.detect_cluster({'MEGASCALE_NUM_SLICES': '2'}).name == 'tpu'


def test_tpu_single_host_is_single_process():
    assert dist.detect_cluster({'TPU_WORKER_HOSTNAMES': 'localhost', 'TPU_WORKER_ID': '0'}) is None
    assert dist.detect_cluster({'TPU_WORKER_HOSTNAMES': ''}) is None
    assert dist.detect_cluster({'MEGASCALE_NUM_SLICES': '1'}) is None
    # JAX reads TPU_PROCESS_ADDRESSES first: when it is set, it decides.
    assert dist.detect_cluster({'TPU_PROCESS_ADDRESSES': 'a:1', 'TPU_WORKER_HOSTNAMES': 'a,b'}) is None


def test_slurm_one_task_is_single_process():
    assert dist.detect_cluster(dict(SLURM_STEP, SLURM_NTASKS='1', SLURM_PROCID='0')) is None
    assert dist.detect_cluster({'SLURM_JOB_ID': '4242'}) is None  # salloc shell: no task count
    assert dist.detect_cluster({'SLURM_NTASKS': '4'}) is None  # not inside a job


def test_slurm_many_tasks():
    # One task per node on 8-GPU nodes: every GPU of the node, not only the local rank's.
    c = dist.detect_cluster(dict(SLURM_STEP, SLURM_NTASKS='2', SLURM_STEP_NUM_NODES='2', SLURM_GPUS_ON_NODE='8'))
    assert (c.name, c.num_processes, c.process_id, c.missing) == ('slurm', 2, 1, ())
    assert c.local_device_ids == tuple(range(8))
    c = dist.detect_cluster(dict(SLURM_STEP, SLURM_NTASKS='2', SLURM_STEP_NUM_NODES='2',
                                 CUDA_VISIBLE_DEVICES='0,1,2,3'))
    assert c.local_device_ids == (0, 1, 2, 3)
    # One task per GPU: JAX's own default (local rank -> GPU), so nothing is passed.
    c = dist.detect_cluster(dict(SLURM_STEP, SLURM_NTASKS='16', SLURM_STEP_NUM_NODES='2', SLURM_GPUS_ON_NODE='8'))
    assert c.num_processes == 16 and c.local_device_ids is None
    # GPU count from the caller (the /dev/nvidiaN count) when the environment has none.
    c = dist.detect_slurm(dict(SLURM_STEP, SLURM_NTASKS='2', SLURM_STEP_NUM_NODES='2'), n_local_gpus=4)
    assert c.local_device_ids == (0, 1, 2, 3)
    # Outside srun (python run directly in the batch script): JAX's detector lacks the step variables.
    c = dist.detect_cluster({'SLURM_JOB_ID': '4242', 'SLURM_NTASKS': '2'})
    assert c.name == 'slurm' and set(c.missing) == {'SLURM_STEP_NODELIST', 'SLURM_PROCID', 'SLURM_LOCALID'}


def test_open_mpi():
    env = {'OMPI_COMM_WORLD_SIZE': '4', 'OMPI_COMM_WORLD_RANK': '3', 'OMPI_COMM_WORLD_LOCAL_RANK': '1',
           'OMPI_COMM_WORLD_LOCAL_SIZE': '2', 'OMPI_MCA_orte_hnp_uri': '123.0;tcp://10.0.0.1:5000'}
    c = dist.detect_cluster(env)
    assert (c.name, c.num_processes, c.process_id, c.missing, c.local_device_ids) == ('ompi', 4, 3, (), None)
    assert dist.detect_cluster(dict(env, OMPI_COMM_WORLD_LOCAL_SIZE='1', CUDA_VISIBLE_DEVICES='0,1')
                               ).local_device_ids == (0, 1)
    # Open MPI 5 sets no orte URI: JAX's detector cannot find the coordinator.
    no_uri = {k: v for k, v in env.items() if k != 'OMPI_MCA_orte_hnp_uri'}
    assert dist.detect_cluster(no_uri).missing == ('OMPI_MCA_orte_hnp_uri',)
    assert dist.detect_cluster(dict(env, OMPI_COMM_WORLD_SIZE='1')) is None
    # mpirun inside a SLURM job: Open MPI first, as JAX checks it first.
    assert dist.detect_cluster(dict(env, **SLURM_STEP, SLURM_NTASKS='4')).name == 'ompi'


def test_force_variable():
    assert dist.detect_cluster({'ANYCOST_DISTRIBUTED': '1'}).name == 'forced'  # e.g. a gcloud TPU VM pod
    assert dist.detect_cluster({'ANYCOST_DISTRIBUTED': 'true', 'TPU_WORKER_HOSTNAMES': 'a,b'}).name == 'tpu'
    assert dist.detect_cluster(dict(SLURM_STEP, SLURM_NTASKS='4', ANYCOST_DISTRIBUTED='0')) is None
    assert dist.detect_cluster({'ANYCOST_DISTRIBUTED': ''}) is None
    with pytest.raises(ValueError, match='ANYCOST_DISTRIBUTED'):
        dist.detect_cluster({'ANYCOST_DISTRIBUTED': 'maybe'})


def test_explicit_arguments():
    assert dist.check_explicit(None, None, None) is False
    assert dist.check_explicit('10.0.0.1:1234', 2, 1) is True
    with pytest.raises(ValueError, match=r'missing: num_processes, process_id'):
        dist.check_explicit('10.0.0.1:1234', None, None)
    with pytest.raises(ValueError, match=r'missing: coordinator_address \(or pass none'):
        dist.check_explicit(None, 2, 0)
    with pytest.raises(ValueError, match='process_id=2'):
        dist.check_explicit('10.0.0.1:1234', 2, 2)
    with pytest.raises(ValueError, match='host:port'):
        dist.check_explicit('10.0.0.1', 2, 0)
    # initialize() refuses a partial set before touching jax.distributed.
    with pytest.raises(ValueError, match='missing: coordinator_address'):
        dist.initialize(num_processes=2, process_id=0, env={})


def test_initialize_without_calling_jax_distributed():
    assert dist.initialize(env={}).startswith('single process')
    assert dist.initialize(env={'SLURM_JOB_ID': '1', 'SLURM_NTASKS': '1'}).startswith('single process')
    with pytest.raises(RuntimeError, match=r'SLURM.*SLURM_STEP_NODELIST.*srun.*--num_processes=2'):
        dist.initialize(env={'SLURM_JOB_ID': '1', 'SLURM_NTASKS': '2'})


def test_initialize_after_jax_started_is_refused():
    import jax
    jax.devices()  # a backend is up now: too late for jax.distributed
    with pytest.raises(RuntimeError, match='before any other JAX call'):
        dist.initialize('localhost:12345', 2, 0, env={})


def _python(code: str, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(('SLURM_', 'OMPI_', 'TPU_', 'MEGASCALE_'))}
    full_env.update(PYTHONPATH=ROOT, JAX_PLATFORMS='cpu', **env)
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=full_env, cwd=ROOT,
                          timeout=60)


def test_failed_initialization_names_the_cluster_and_the_fix():
    # Forced on a machine with no cluster: JAX's detection finds no coordinator, and the error says what to pass.
    r = _python('from anycost_jax.train import distributed as d; d.initialize()',
                ANYCOST_DISTRIBUTED='1', KUBERNETES_SERVICE_HOST='')
    assert r.returncode != 0
    assert re.search(r'RuntimeError: jax.distributed.initialize\(\) failed for the detected cluster, '
                     r'requested by the environment \(ANYCOST_DISTRIBUTED=1\).*'
                     r'--coordinator_address=HOST0:PORT --num_processes=N', r.stderr), r.stderr


# ---------------------------------------------------------------------------------------- launcher

def test_train_launcher_helpfull():
    r = subprocess.run([sys.executable, 'launch/train.py', '--helpfull'], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode in (0, 1) and 'Traceback' not in r.stderr, r.stderr  # absl's --help* exits with 1
    for flag in ('--config', '--workdir', '--coordinator_address', '--num_processes', '--process_id'):
        assert flag + ':' in r.stdout, flag
    assert 'launch/train.py --config=configs/ffhq.py:anycost --workdir=DIR' in r.stdout
    r = subprocess.run([sys.executable, 'launch/train.py'], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode != 0 and '--workdir' in r.stderr and '--config' in r.stderr


CONFIG = '''
import ml_collections
def get_config(arg=None):
    return ml_collections.ConfigDict({'batch_size': 8, 'stage': arg or 'default'})
'''

# Runs launch/train.py as a program with a stand-in trainer module.
RUN_WITH_FAKE_TRAINER = '''
import runpy, sys, types
import anycost_jax.train
fake = types.ModuleType('anycost_jax.train.trainer')
def train_and_evaluate(config, workdir):
    import jax
    print('TRAIN', config.stage, config.batch_size, workdir, jax.process_count(), 'devices', jax.device_count())
fake.train_and_evaluate = train_and_evaluate
sys.modules['anycost_jax.train.trainer'] = anycost_jax.train.trainer = fake
sys.argv = ['launch/train.py'] + sys.argv[1:]
runpy.run_path('launch/train.py', run_name='__main__')
'''


def test_train_launcher_calls_the_trainer(tmp_path):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(CONFIG)
    args = [f'--config={cfg}:anycost', f'--workdir={tmp_path}/w', '--config.batch_size=32']
    r = subprocess.run([sys.executable, '-c', RUN_WITH_FAKE_TRAINER] + args, capture_output=True, text=True,
                       cwd=ROOT, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu'))
    assert r.returncode == 0, r.stderr
    assert f'TRAIN anycost 32 {tmp_path}/w 1 devices 8' in r.stdout  # the tests' XLA_FLAGS count is kept
    assert 'single process' in r.stderr and 'JAX process: 0 / 1' in r.stderr
    # A partial multi-host set fails before any set-up, naming what is missing.
    r = subprocess.run([sys.executable, '-c', RUN_WITH_FAKE_TRAINER] + args + ['--num_processes=2'],
                       capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu'))
    assert r.returncode != 0 and 'missing: coordinator_address, process_id' in r.stderr
    assert 'TRAIN' not in r.stdout


# ---------------------------------------------------------------------------------------- scripts

def _bash(script, *args, **env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ('TPU_NAME', 'ZONE', 'PROJECT', 'ACCELERATOR_TYPE', 'WORKDIR', 'CONFIG', 'VENV')}
    return subprocess.run([BASH, os.path.join(ROOT, 'launch', script), *args], capture_output=True, text=True,
                          env=dict(clean, **env), timeout=30)


@needs_bash
def test_tpu_pod_dry_run():
    env = dict(TPU_NAME='anycost-pod', ZONE='us-central2-b', ACCELERATOR_TYPE='v4-32', PROJECT='my-proj')
    r = _bash('tpu_pod.sh', '--dry-run', '--config=configs/ffhq.py:anycost', '--workdir=gs://bucket/run',
              '--config.batch_size=256', **env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    where = '--zone=us-central2-b --project=my-proj'
    assert f'+ gcloud compute tpus tpu-vm describe anycost-pod {where}' in lines[0]
    assert any(l.startswith(f'+ gcloud compute tpus tpu-vm create anycost-pod {where} --accelerator-type=v4-32 '
                            '--version=tpu-ubuntu2204-base') for l in lines)
    assert any(l.startswith('+ gcloud compute tpus tpu-vm scp ') and '--worker=all' in l for l in lines)
    ssh = [l for l in lines if l.startswith(f'+ gcloud compute tpus tpu-vm ssh anycost-pod {where} --worker=all')]
    assert len(ssh) == 3  # unpack, install, train
    assert "jax[tpu]" in ssh[1] and 'pip install' in ssh[1] and '-e .' in ssh[1]
    assert ('ANYCOST_DISTRIBUTED=1 $HOME/anycost-venv/bin/python launch/train.py --config=configs/ffhq.py:anycost '
            '--workdir=gs://bucket/run --config.batch_size=256') in ssh[2]
    # --ref clones instead of copying; --skip-setup only trains.
    r = _bash('tpu_pod.sh', '--dry-run', '--ref=v0.2', '--repo=https://example.com/anycost-jax.git',
              '--config=c.py', '--workdir=gs://b', **env)
    assert 'git clone -q https://example.com/anycost-jax.git' in r.stdout and 'checkout -q v0.2' in r.stdout
    assert 'tpu-vm scp' not in r.stdout
    r = _bash('tpu_pod.sh', '--dry-run', '--skip-setup', '--config=c.py', '--workdir=gs://b', **env)
    assert r.stdout.count('tpu-vm ssh') == 1 and 'pip install' not in r.stdout


@needs_bash
def test_tpu_pod_usage():
    r = _bash('tpu_pod.sh', '-h')
    assert r.returncode == 0 and r.stdout.startswith('Usage: launch/tpu_pod.sh')
    r = _bash('tpu_pod.sh', '--dry-run', '--config=c.py', ZONE='z')
    assert r.returncode == 2 and 'missing: TPU_NAME --workdir' in r.stderr and 'gcloud' not in r.stdout


@needs_bash
def test_tpu_pod_arguments_reach_every_worker_intact(tmp_path):
    # A stand-in gcloud that runs --command in a local shell, and a stand-in venv python that prints its argv.
    (tmp_path / 'bin').mkdir()
    (tmp_path / 'bin' / 'gcloud').write_text(textwrap.dedent('''\
        #!/usr/bin/env bash
        for a in "$@"; do
          case "$a" in
            describe) echo v4-32; exit 0 ;;
            --command=*) cd "$HOME"; exec bash -c "${a#--command=}" ;;
          esac
        done
        '''))
    venv = tmp_path / 'home' / 'anycost-venv' / 'bin'
    venv.mkdir(parents=True)
    (tmp_path / 'home' / 'anycost-jax').mkdir()
    (venv / 'python').write_text('#!/usr/bin/env bash\necho "D=$ANYCOST_DISTRIBUTED"; printf "[%s]\\n" "$@"\n')
    for f in (tmp_path / 'bin' / 'gcloud', venv / 'python'):
        f.chmod(0o755)
    tricky = "--config.name=it's a $HOME * run"
    r = _bash('tpu_pod.sh', '--skip-setup', '--config=configs/ffhq.py:anycost', '--workdir=gs://b/r', tricky,
              TPU_NAME='pod', ZONE='z', HOME=str(tmp_path / 'home'),
              PATH=f'{tmp_path / "bin"}{os.pathsep}{os.environ["PATH"]}')
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ['D=1', '[launch/train.py]', '[--config=configs/ffhq.py:anycost]',
                                     '[--workdir=gs://b/r]', f'[{tricky}]']


@needs_bash
def test_gpu_slurm_dry_run():
    r = _bash('gpu_slurm.sh', '--dry-run', '--config.batch_size=64', WORKDIR='/shared/runs/x', VENV='/opt/venv')
    assert r.returncode == 0, r.stderr
    assert f'+ cd {ROOT}' in r.stdout and '+ source /opt/venv/bin/activate' in r.stdout
    assert ('srun --ntasks-per-node=1 --kill-on-bad-exit=1 python launch/train.py '
            '--config=configs/ffhq.py:anycost --workdir=/shared/runs/x --config.batch_size=64') in r.stdout
    r = _bash('gpu_slurm.sh', '--dry-run', WORKDIR='/w', CONFIG='configs/lsun_car.py:multires')
    assert '--config=configs/lsun_car.py:multires --workdir=/w' in r.stdout
    r = _bash('gpu_slurm.sh', '--dry-run')
    assert r.returncode == 2 and 'WORKDIR' in r.stderr and 'srun' not in r.stdout


def test_gpu_slurm_directives():
    with open(os.path.join(ROOT, 'launch', 'gpu_slurm.sh')) as f:
        lines = f.read().splitlines()
    # sbatch reads #SBATCH lines only before the first command.
    first_command = next(i for i, l in enumerate(lines) if l.strip() and not l.startswith('#'))
    directives = [l for l in lines[:first_command] if l.startswith('#SBATCH')]
    assert all(not l.startswith('#SBATCH') for l in lines[first_command:])
    keys = {l.split()[1].split('=')[0] for l in directives}
    assert {'--nodes', '--ntasks-per-node', '--gpus-per-node', '--time'} <= keys
    assert '#SBATCH --ntasks-per-node=1' in directives


def test_cpu_devices_keep_minibatch_stddev_groups_whole():
    assert dist.cpu_devices_for([16], 2) == 2      # the demo on 2 cores: 2 devices of 8
    assert dist.cpu_devices_for([16], 8) == 4      # never below 4 images per device
    assert dist.cpu_devices_for([32], 64) == 8     # at most MAX_CPU_DEVICES
    assert dist.cpu_devices_for([16, 24], 8) == 2  # every stage's batch
    assert dist.cpu_devices_for([6], 4) == 1 == dist.cpu_devices_for([16], 1)
    env = {'XLA_FLAGS': '--xla_backend_optimization_level=0'}
    assert '2 cores as 2 XLA devices' in dist.split_cpu_cores([16], env=env, cores=2)
    assert env['XLA_FLAGS'] == '--xla_backend_optimization_level=0 --xla_force_host_platform_device_count=2'
    # A count already set is kept; --cpu_devices=1 adds nothing; a count that cuts a batch is refused.
    assert 'as XLA_FLAGS sets them' in dist.split_cpu_cores([16], 4, env=env, cores=2)
    assert env['XLA_FLAGS'].endswith('count=2')
    env = {}
    assert dist.split_cpu_cores([16], 1, env=env, cores=2).startswith('CPU devices: 1') and env == {}
    with pytest.raises(ValueError, match='--cpu_devices=3 does not divide the global batch 16'):
        dist.split_cpu_cores([16], 3, env={}, cores=2)


def test_train_launcher_splits_the_cpu_cores(tmp_path):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(CONFIG)
    flags = ' '.join(f for f in os.environ.get('XLA_FLAGS', '').split() if dist.CPU_DEVICES_FLAG not in f)
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu', XLA_FLAGS=flags)
    args = [f'--config={cfg}:anycost', f'--workdir={tmp_path}/w', '--config.batch_size=32']
    expected = dist.cpu_devices_for([32], len(os.sched_getaffinity(0)))
    for extra, n in (([], 1), (['--cpu_devices=0'], expected), (['--cpu_devices=4'], 4)):
        r = subprocess.run([sys.executable, '-c', RUN_WITH_FAKE_TRAINER] + args + extra, capture_output=True,
                           text=True, cwd=ROOT, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        assert f'TRAIN anycost 32 {tmp_path}/w 1 devices {n}' in r.stdout, (extra, r.stdout)
