#!/usr/bin/env bash
# Builds (or reuses) the project's virtual environment in ./.venv, pinned by requirements/.
#
# Idempotent: a stamp records a hash of everything that shapes the environment; when it matches, this returns in well
# under a second. The one slow step, building mmcv 2.1.0 from source with its ops (~10 min on 2 cores), runs once per
# machine: the built wheel is cached outside the checkout (MMFASTVIT_CACHE, default ~/.cache/mmfastvit) and reinstalled
# from there by every later set-up, in any clone.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MMFASTVIT_VENV:-$root/.venv}
cache=${MMFASTVIT_CACHE:-$HOME/.cache/mmfastvit}
python=${PYTHON:-python3}
req=$root/requirements

stamp_inputs=("$req"/*.txt "$root/setup.py" "$root/tools/setup_env.sh")
want=$(cat "${stamp_inputs[@]}" | sha256sum | cut -d' ' -f1)
if [[ -x $venv/bin/python && -f $venv/.mmfastvit-stamp && $(cat "$venv/.mmfastvit-stamp") == "$want" ]]; then
  exit 0
fi

log() { printf '[setup_env] %s\n' "$*" >&2; }

if [[ ! -x $venv/bin/python ]]; then
  log "creating $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip)
"${pip[@]}" install --quiet --upgrade "pip>=24"

# 1. The matched torch / torchvision pair from the public registry (not the machine's local CPU-only torch wheel).
if ! "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m
assert m.version('torch') == '2.13.0' and m.version('torchvision') == '0.28.0'
PY
then
  log "installing torch / torchvision (requirements/torch.txt)"
  "${pip[@]}" --isolated install --quiet -r "$req/torch.txt"
fi

# 2. Build prerequisites, which mmcv needs present because it is built without isolation.
"${pip[@]}" install --quiet -c "$req/constraints.txt" -r "$req/build.txt"

# 3. mmcv with its compiled ops, from the cached wheel when there is one.
torch_v=$("$venv/bin/python" -c 'import torch; print(torch.__version__)')
py_tag=$("$venv/bin/python" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
wheel_dir=$cache/wheels/mmcv-2.1.0-torch$torch_v-$py_tag
if ! "$venv/bin/python" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; then
  if ! compgen -G "$wheel_dir/mmcv-2.1.0-*.whl" >/dev/null; then
    log "building mmcv 2.1.0 with ops from source (about 10 minutes on 2 cores; cached in $wheel_dir afterwards)"
    tmp=$(mktemp -d "$cache/build.XXXXXX" 2>/dev/null || { mkdir -p "$cache"; mktemp -d "$cache/build.XXXXXX"; })
    trap 'rm -rf "$tmp"' EXIT
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} "${pip[@]}" wheel --no-build-isolation --no-deps -w "$tmp" -r "$req/mmcv.txt"
    mkdir -p "$wheel_dir"
    # Move into place only once complete, so an interrupted build never leaves a wheel that looks usable.
    mv "$tmp"/mmcv-2.1.0-*.whl "$wheel_dir/"
  fi
  "${pip[@]}" install --quiet --no-deps --force-reinstall "$wheel_dir"/mmcv-2.1.0-*.whl
  # mmcv's own run-time dependencies (addict, yapf, ...), resolved normally.
  "${pip[@]}" install --quiet -c "$req/constraints.txt" "$(ls "$wheel_dir"/mmcv-2.1.0-*.whl)"
fi

# 4. Everything else, held to the pins, then the project itself in editable mode.
"${pip[@]}" install --quiet -c "$req/constraints.txt" \
  -r "$req/runtime.txt" -r "$req/optional.txt" -r "$req/deploy.txt" -r "$req/hand.txt" -r "$req/tests.txt"
"${pip[@]}" install --quiet --no-deps --no-build-isolation -e "$root"

"$venv/bin/python" - <<'PY'
import mmcv.ops, mmdet.models, mmseg.models, mmpretrain.models, torchvision  # noqa: F401  fail the set-up, not the first test
PY
echo "$want" > "$venv/.mmfastvit-stamp"
log "environment ready: $venv"
