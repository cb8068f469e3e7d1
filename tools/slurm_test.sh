#!/usr/bin/env bash
# Testing on a Slurm cluster with srun, one task per GPU (tools/launch.sh lists the environment it reads).
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
set -eu
[ $# -ge 4 ] || { echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]" >&2; exit 2; }
exec "$(dirname "$0")/launch.sh" slurm "$1" "$2" test.py "$3" "$4" "${@:5}"
