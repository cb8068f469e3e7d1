#!/usr/bin/env bash
# The one launcher behind dist_train.sh, dist_test.sh, slurm_train.sh and slurm_test.sh: runs a tool of this folder,
# one process per GPU, with mmengine's matching --launcher and the repository importable.
#   tools/launch.sh torchrun GPUS TOOL [TOOL arguments]
#   tools/launch.sh slurm PARTITION JOB_NAME TOOL [TOOL arguments]
# torchrun, several nodes: run it on each with NNODES, NODE_RANK, MASTER_ADDR and PORT set (defaults: 1, 0, 127.0.0.1,
# 29500). slurm: GPUS (total, default 8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS (extra srun options).
# PYTHON picks the interpreter (default: python).
set -eu
TOOLS=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}"
case ${1:-} in
torchrun)
    [ $# -ge 3 ] || { echo "usage: $0 torchrun GPUS TOOL [arguments]" >&2; exit 2; }
    GPUS=$2 TOOL=$3
    shift 3
    exec "${PYTHON:-python}" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --master_port="${PORT:-29500}" \
        --nproc_per_node="$GPUS" \
        "$TOOLS/$TOOL" --launcher pytorch "$@"
    ;;
slurm)
    [ $# -ge 4 ] || { echo "usage: $0 slurm PARTITION JOB_NAME TOOL [arguments]" >&2; exit 2; }
    PARTITION=$2 JOB_NAME=$3 TOOL=$4
    shift 4
    GPUS_PER_NODE=${GPUS_PER_NODE:-8}
    # SRUN_ARGS is split into words on purpose: it holds several srun options.
    # shellcheck disable=SC2086
    exec srun -p "$PARTITION" \
        --job-name="$JOB_NAME" \
        --gres=gpu:"$GPUS_PER_NODE" \
        --ntasks="${GPUS:-8}" \
        --ntasks-per-node="$GPUS_PER_NODE" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" \
        --kill-on-bad-exit=1 \
        ${SRUN_ARGS:-} \
        "${PYTHON:-python}" -u "$TOOLS/$TOOL" --launcher slurm "$@"
    ;;
*)
    echo "usage: $0 torchrun GPUS TOOL [arguments] | $0 slurm PARTITION JOB_NAME TOOL [arguments]" >&2
    exit 2
    ;;
esac
