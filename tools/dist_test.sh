#!/usr/bin/env bash
# Distributed testing with torchrun, one process per GPU (tools/launch.sh lists the environment it reads).
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
set -eu
[ $# -ge 3 ] || { echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py options]" >&2; exit 2; }
exec "$(dirname "$0")/launch.sh" torchrun "$3" test.py "$1" "$2" "${@:4}"
