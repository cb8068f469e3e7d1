#!/usr/bin/env bash
# Distributed training with torchrun, one process per GPU (tools/launch.sh lists the environment it reads).
#   tools/dist_train.sh CONFIG GPUS [train.py options]
set -eu
[ $# -ge 2 ] || { echo "usage: $0 CONFIG GPUS [train.py options]" >&2; exit 2; }
exec "$(dirname "$0")/launch.sh" torchrun "$2" train.py "$1" "${@:3}"
