#!/usr/bin/env bash
# run.sh [--quick] [bench.py options...] - the gateway benchmark in one command (see README.md).
#
#   bash bench/gateway/run.sh            # full run: conns 1,16,64; json + stream; 3 x 10 s; ~11 min
#   bash bench/gateway/run.sh --quick    # smoke run: conns 1,16; 1 x 3 s; ~1.5 min (+ LiteLLM install)
#
# Installs wrk (apt-get) when missing, margin's venv (.venv, via `make`'s recipe) when missing, and the
# LiteLLM venv ($LITELLM_VENV, default /tmp/margin-bench-litellm) when missing; LiteLLM is skipped with a
# message when it cannot be installed (or with SKIP_LITELLM=1). Then bench.py starts the mock, margin and
# LiteLLM on 127.0.0.1, measures, stops everything and prints Markdown tables + JSON lines on stdout.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
LITELLM_VENV="${LITELLM_VENV:-/tmp/margin-bench-litellm}"
export LITELLM_VENV
log() { echo "[run.sh] $*" >&2; }

if [ "$(nproc)" -lt 2 ]; then log "needs 2 CPUs (gateway on CPU 0, mock + wrk on CPU 1)"; exit 2; fi
for t in taskset; do command -v "$t" >/dev/null || { log "missing $t (util-linux)"; exit 2; }; done

if ! command -v wrk >/dev/null; then
  log "installing wrk (apt-get)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2 && $SUDO apt-get install -y -qq wrk >&2
fi

PY="$REPO/.venv/bin/python"
if [ ! -x "$REPO/.venv/bin/margin" ]; then
  log "creating margin's venv (.venv)"
  python3 -m venv "$REPO/.venv" >&2
  "$PY" -m pip install --quiet -e "$REPO" >&2
fi

EXTRA=()
if [ "${SKIP_LITELLM:-0}" = 1 ]; then
  log "SKIP_LITELLM=1: not measuring LiteLLM"; EXTRA+=(--no-litellm)
elif ! bash "$HERE/setup_litellm.sh" "$LITELLM_VENV" 2> >(grep -v "^WARNING: Location" >&2); then
  log "LiteLLM could not be installed in $LITELLM_VENV: SKIPPING LiteLLM (direct and margin only)"
  EXTRA+=(--no-litellm)
fi

cd "$REPO"
exec "$PY" "$HERE/bench.py" --litellm-venv "$LITELLM_VENV" "${EXTRA[@]}" "$@"
