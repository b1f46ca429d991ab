#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one process per node, each driving all of its GPUs.
#
#   WORKDIR=/shared/runs/ffhq CONFIG=configs/ffhq.py:anycost sbatch --nodes=4 launch/gpu_slurm.sh --config.batch_size=64
#   WORKDIR=/shared/runs/ffhq launch/gpu_slurm.sh --dry-run        # print the srun command, run nothing
#
# Runs, from the repository the job was submitted from:
#
#   srun python launch/train.py --config=$CONFIG --workdir=$WORKDIR "$@"
#
# srun starts one task per node (--ntasks-per-node=1); JAX's SLURM detection, which
# launch/train.py invokes when SLURM_NTASKS > 1, takes the coordinator (the first node of
# SLURM_STEP_NODELIST, port from SLURM_JOB_ID), process count and index (SLURM_NTASKS,
# SLURM_PROCID) from the environment, and anycost_jax.train.distributed gives each process every
# GPU of its node (SLURM_GPUS_ON_NODE). A 1-node job runs as a single process.
#
# Environment:
#   WORKDIR   checkpoints and summaries, on a file system every node sees (required)
#   CONFIG    training config (default configs/ffhq.py:anycost)
#   VENV      virtual environment to activate on every node (optional)
#   PYTHON    interpreter (default python)
#   REPO      repository root (default: the directory sbatch was run from, $SLURM_SUBMIT_DIR)
# Arguments: --dry-run (print the command), -h/--help; all others go to launch/train.py.
# Override the #SBATCH defaults on the sbatch command line (--nodes, --gpus-per-node, --time, ...).
#
# Install once into the environment the nodes use (Python >= 3.11), from the repository root:
#   python -m venv ~/anycost-venv && . ~/anycost-venv/bin/activate
#   pip install -e . 'jax[cuda12]>=0.10,<0.11'
#
#SBATCH --job-name=anycost-jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=48:00:00
#SBATCH --output=anycost-%j.out
set -euo pipefail

usage() { sed -n '2,/^#SBATCH/{/^#SBATCH/q;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

DRY_RUN=0
ARGS=()
for a in "$@"; do
  case "$a" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    *) ARGS+=("$a") ;;
  esac
done

if [[ -z "${WORKDIR:-}" ]]; then
  usage >&2
  echo "gpu_slurm.sh: set WORKDIR (a directory every node sees)" >&2
  exit 2
fi
CONFIG="${CONFIG:-configs/ffhq.py:anycost}"
PYTHON="${PYTHON:-python}"
# sbatch runs a copy of this script from its spool directory: find the repository from where the job was submitted.
REPO="${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}"
[[ -f "$REPO/launch/train.py" ]] || { echo "gpu_slurm.sh: no launch/train.py under REPO=$REPO" >&2; exit 2; }

SRUN=(srun --ntasks-per-node=1 --kill-on-bad-exit=1)
# Since SLURM 22.05 srun no longer inherits sbatch's --cpus-per-task: pass it on (the input pipeline uses them).
[[ -z "${SLURM_CPUS_PER_TASK:-}" ]] || SRUN+=("--cpus-per-task=$SLURM_CPUS_PER_TASK")
CMD=("${SRUN[@]}" "$PYTHON" launch/train.py "--config=$CONFIG" "--workdir=$WORKDIR" ${ARGS[@]+"${ARGS[@]}"})

if ((DRY_RUN)); then
  echo "+ cd $(printf '%q' "$REPO")"
  [[ -z "${VENV:-}" ]] || echo "+ source $(printf '%q' "$VENV/bin/activate")"
  printf '+'; printf ' %q' "${CMD[@]}"; printf '\n'
  exit 0
fi

cd "$REPO"
# shellcheck disable=SC1091
[[ -z "${VENV:-}" ]] || source "$VENV/bin/activate"
echo "gpu_slurm.sh: job ${SLURM_JOB_ID:-?} on ${SLURM_JOB_NUM_NODES:-?} node(s): ${SLURM_JOB_NODELIST:-?}" >&2
exec "${CMD[@]}"
