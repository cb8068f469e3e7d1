#!/usr/bin/env bash
# Training on a Slurm cluster with srun, one task per GPU (tools/launch.sh lists the environment it reads).
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py options]
set -eu
[ $# -ge 3 ] || { echo "usage: $0 PARTITION JOB_NAME CONFIG [train.py options]" >&2; exit 2; }
exec "$(dirname "$0")/launch.sh" slurm "$1" "$2" train.py "$3" "${@:4}"
