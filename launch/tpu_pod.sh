#!/usr/bin/env bash
# Trains on a Cloud TPU VM pod slice: create (or reuse) it, ship this code to every worker,
# install it, and run launch/train.py on all workers at once.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh [options] --config=CONFIG --workdir=gs://BUCKET/DIR [train.py args...]

Creates the TPU VM pod slice $TPU_NAME if `gcloud compute tpus tpu-vm describe` does not find it
(otherwise reuses it), copies this checkout (tracked and untracked, non-ignored files, as they are
on disk) to ~/anycost-jax on every worker, or clones --repo at --ref there, installs it with
`jax[tpu]` into a Python 3.11 virtual environment (~/anycost-venv, made with uv: TPU VM images
ship Python 3.10), then runs on every worker (--worker=all):

    ANYCOST_DISTRIBUTED=1 ~/anycost-venv/bin/python launch/train.py --config=CONFIG --workdir=DIR ...

Every other argument (e.g. --config.batch_size=256) is passed on to launch/train.py.
ANYCOST_DISTRIBUTED=1 makes launch/train.py call jax.distributed.initialize(), which finds the
pod's workers through the TPU metadata server. The workdir must be shared by all workers: gs://.

Options:
  --config=CONFIG     training config, relative to the repository (required), e.g. configs/ffhq.py:anycost
  --workdir=DIR       checkpoints and summaries (required), e.g. gs://my-bucket/anycost/ffhq
  --ref=REF           git clone --repo at REF on every worker instead of copying this checkout
  --repo=URL          repository for --ref (default: this checkout's `origin` remote)
  --skip-setup        reuse the code and environment already on the workers (no copy, no install)
  --detach            start training under nohup and return; log in ~/anycost-train.log on each worker
  --dry-run           print the commands (gcloud and local) instead of running them
  -h, --help          this text

Environment:
  TPU_NAME            name of the TPU VM (required)
  ZONE                its zone (required), e.g. us-central2-b
  ACCELERATOR_TYPE    slice type when creating it (default v4-32)
  RUNTIME_VERSION     TPU VM image when creating it (default tpu-ubuntu2204-base)
  PROJECT             Google Cloud project (default: gcloud's configured project)
  CREATE_FLAGS        extra flags for `tpu-vm create`, e.g. "--spot"

Example:
  TPU_NAME=anycost ZONE=us-central2-b ACCELERATOR_TYPE=v4-32 \
    launch/tpu_pod.sh --config=configs/ffhq.py:anycost --workdir=gs://my-bucket/ffhq --config.batch_size=256
EOF
}

die() { echo "tpu_pod.sh: $*" >&2; echo "Run launch/tpu_pod.sh -h for usage." >&2; exit 2; }

CONFIG='' WORKDIR='' REF='' REPO_URL='' SKIP_SETUP=0 DETACH=0 DRY_RUN=0
EXTRA=()
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --config=*) CONFIG="${1#*=}" ;;
    --config) (($# > 1)) || die '--config needs a value'; CONFIG="$2"; shift ;;
    --workdir=*) WORKDIR="${1#*=}" ;;
    --workdir) (($# > 1)) || die '--workdir needs a value'; WORKDIR="$2"; shift ;;
    --ref=*) REF="${1#*=}" ;;
    --repo=*) REPO_URL="${1#*=}" ;;
    --skip-setup) SKIP_SETUP=1 ;;
    --detach) DETACH=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --) shift; EXTRA+=("$@"); break ;;
    *) EXTRA+=("$1") ;;
  esac
  shift
done

missing=()
[[ -n "${TPU_NAME:-}" ]] || missing+=(TPU_NAME)
[[ -n "${ZONE:-}" ]] || missing+=(ZONE)
[[ -n "$CONFIG" ]] || missing+=(--config)
[[ -n "$WORKDIR" ]] || missing+=(--workdir)
((${#missing[@]} == 0)) || { usage >&2; die "missing: ${missing[*]}"; }
[[ "$WORKDIR" == gs://* ]] || echo "tpu_pod.sh: warning: --workdir=$WORKDIR is not gs://; every worker" \
  "needs the same directory" >&2

ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-32}"
RUNTIME_VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GCLOUD=(gcloud compute tpus tpu-vm)
WHERE=("--zone=$ZONE")
[[ -z "${PROJECT:-}" ]] || WHERE+=("--project=$PROJECT")
REMOTE_DIR='$HOME/anycost-jax'   # expanded by the workers' shell
VENV='$HOME/anycost-venv'

quote() {  # shell-quote for display: bare when safe, else in single quotes
  local a out=()
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out+=("$a"); else out+=("'${a//\'/\'\\\'\'}'"); fi
  done
  printf '%s\n' "${out[*]}"
}
run() {  # run a command, or print it with --dry-run
  if ((DRY_RUN)); then printf '+ %s' "$(quote "$@")"; printf '\n'; else "$@"; fi
}
on_all_workers() {  # run a shell command line on every worker
  run "${GCLOUD[@]}" ssh "$TPU_NAME" "${WHERE[@]}" --worker=all --command="$1"
}

# 1. Create the slice, or reuse it.
if ((DRY_RUN)); then
  run "${GCLOUD[@]}" describe "$TPU_NAME" "${WHERE[@]}" --format='value(acceleratorType)'
  echo '# only if describe finds no such TPU:'
  # shellcheck disable=SC2086  # CREATE_FLAGS is a list of flags
  run "${GCLOUD[@]}" create "$TPU_NAME" "${WHERE[@]}" --accelerator-type="$ACCELERATOR_TYPE" \
    --version="$RUNTIME_VERSION" ${CREATE_FLAGS:-}
elif existing="$("${GCLOUD[@]}" describe "$TPU_NAME" "${WHERE[@]}" --format='value(acceleratorType)' 2>/dev/null)"; then
  existing="${existing##*/}"
  if [[ "$existing" != "$ACCELERATOR_TYPE" ]]; then
    die "TPU $TPU_NAME exists as $existing, not ACCELERATOR_TYPE=$ACCELERATOR_TYPE;" \
      "delete it or set ACCELERATOR_TYPE=$existing"
  fi
  echo "tpu_pod.sh: reusing $TPU_NAME ($existing)" >&2
else
  # shellcheck disable=SC2086
  run "${GCLOUD[@]}" create "$TPU_NAME" "${WHERE[@]}" --accelerator-type="$ACCELERATOR_TYPE" \
    --version="$RUNTIME_VERSION" ${CREATE_FLAGS:-}
fi

# 2. The code on every worker, 3. installed with jax[tpu].
if ((!SKIP_SETUP)); then
  if [[ -n "$REF" ]]; then
    if [[ -z "$REPO_URL" ]]; then
      REPO_URL="$(git -C "$ROOT" remote get-url origin 2>/dev/null)" \
        || die '--ref needs --repo=URL (no origin remote here)'
    fi
    on_all_workers "set -e; rm -rf $REMOTE_DIR; git clone -q $(printf '%q' "$REPO_URL") $REMOTE_DIR; \
git -C $REMOTE_DIR checkout -q $(printf '%q' "$REF")"
  else
    TARBALL="${TMPDIR:-/tmp}/anycost-jax-$TPU_NAME.tgz"
    # Tracked and untracked, non-ignored files as they are on disk (deleted ones skipped).
    pack='git ls-files -z --cached --others --exclude-standard'
    pack+=" | while IFS= read -r -d '' f; do [[ -e \"\$f\" ]] && printf '%s\\0' \"\$f\"; done"
    pack+=" | tar --null -T - -czf $(printf '%q' "$TARBALL")"
    if ((DRY_RUN)); then echo "+ (cd $(printf '%q' "$ROOT") && $pack)"; else (cd "$ROOT" && eval "$pack"); fi
    run "${GCLOUD[@]}" scp "$TARBALL" "$TPU_NAME:anycost-jax.tgz" "${WHERE[@]}" --worker=all
    on_all_workers "set -e; rm -rf $REMOTE_DIR; mkdir -p $REMOTE_DIR; tar -xzf \$HOME/anycost-jax.tgz -C $REMOTE_DIR"
  fi
  # uv's standalone installer (no system pip needed) and a Python 3.11 it downloads.
  on_all_workers "set -e; export PATH=\$HOME/.local/bin:\$PATH; \
command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh; \
uv venv -q --allow-existing -p 3.11 $VENV; \
cd $REMOTE_DIR && uv pip install -q -p $VENV/bin/python -e . 'jax[tpu]>=0.10,<0.11'"
fi

# 4. Train on every worker.
args="$(printf '%q ' "--config=$CONFIG" "--workdir=$WORKDIR" ${EXTRA[@]+"${EXTRA[@]}"})"
train="ANYCOST_DISTRIBUTED=1 $VENV/bin/python launch/train.py ${args% }"
if ((DETACH)); then
  log='$HOME/anycost-train.log'
  on_all_workers "cd $REMOTE_DIR && setsid nohup bash -c $(printf '%q' "$train") > $log 2>&1 < /dev/null &"
  echo "tpu_pod.sh: started; follow with:" \
    "${GCLOUD[*]} ssh $TPU_NAME ${WHERE[*]} --worker=0 --command='tail -f anycost-train.log'" >&2
else
  on_all_workers "cd $REMOTE_DIR && $train"
fi
