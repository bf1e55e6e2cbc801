#!/usr/bin/env bash
# profile.sh [profile.py options] - profile margin's gateway under load (py-spy), non-streaming and
# streaming, 16 connections. Installs py-spy into $TOOLS_VENV (default /tmp/margin-bench-tools) and wrk
# when missing. Prints Markdown tables; flame graphs go to $OUT_DIR (default /tmp/margin-gateway-profile).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
TOOLS_VENV="${TOOLS_VENV:-/tmp/margin-bench-tools}"
OUT_DIR="${OUT_DIR:-/tmp/margin-gateway-profile}"
log() { echo "[profile.sh] $*" >&2; }
if ! command -v wrk >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2 && $SUDO apt-get install -y -qq wrk >&2
fi
if [ ! -x "$TOOLS_VENV/bin/py-spy" ]; then
  log "installing py-spy into $TOOLS_VENV"
  python3 -m venv "$TOOLS_VENV" >&2
  "$TOOLS_VENV/bin/pip" install --quiet 'py-spy==0.4.3' 2> >(grep -v "^WARNING: Location" >&2) >&2
fi
mkdir -p "$OUT_DIR"
cd "$REPO"
for variant in json stream; do
  .venv/bin/python "$HERE/profile.py" --py-spy "$TOOLS_VENV/bin/py-spy" --variant "$variant" \
    --svg "$OUT_DIR/margin-$variant.svg" --raw-out "$OUT_DIR/margin-$variant.collapsed.txt" \
    --json-out "$OUT_DIR/margin-$variant.json" "$@"
done
log "flame graphs and collapsed stacks in $OUT_DIR"
