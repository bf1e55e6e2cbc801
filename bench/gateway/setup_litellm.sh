#!/usr/bin/env bash
# setup_litellm.sh [VENV] - create the LiteLLM benchmark venv (default /tmp/margin-bench-litellm).
#
# Installs litellm==1.109.1 (pinned) with its base and [proxy] requirements, read from the wheel's own
# METADATA. Two of those pins name releases that the package mirror used here does not serve
# (certifi>=2026.10.19, litellm-proxy-extras==0.4.113); they are relaxed to the newest available release.
# Everything else keeps LiteLLM's own version ranges. Idempotent: exits 0 at once when the venv already
# runs `litellm --version`. Exit 1 when LiteLLM cannot be installed (run.sh then skips LiteLLM).
set -euo pipefail
VENV="${1:-${LITELLM_VENV:-/tmp/margin-bench-litellm}}"
LITELLM_VERSION="1.109.1"
RELAX="certifi litellm-proxy-extras"   # pins relaxed (mirror lacks the pinned releases)
log() { echo "[setup_litellm] $*" >&2; }

if [ -x "$VENV/bin/litellm" ] && [ -f "$VENV/.margin-bench-ok" ]; then
  log "LiteLLM venv ready: $VENV"; exit 0
fi
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
DL="$(mktemp -d -t litellm-dl.XXXXXX)"
trap 'rm -rf "$DL"' EXIT
log "downloading litellm==$LITELLM_VERSION (no deps)"
"$VENV/bin/pip" download --quiet --no-deps -d "$DL" "litellm==$LITELLM_VERSION"
WHL="$(ls "$DL"/litellm-"$LITELLM_VERSION"-*.whl)"
# base + [proxy] requirements from the wheel's METADATA, with the RELAX pins dropped
"$VENV/bin/python" - "$WHL" "$RELAX" > "$DL/reqs.txt" <<'PY'
import re, sys, zipfile
whl, relax = sys.argv[1], set(sys.argv[2].split())
with zipfile.ZipFile(whl) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    text = z.read(meta).decode()
for line in text.splitlines():
    if not line.startswith("Requires-Dist: "):
        continue
    req = line[len("Requires-Dist: "):]
    spec, _, marker = req.partition(";")
    marker = marker.strip()
    extras = re.findall(r"extra == '([^']+)'", marker)
    if extras and extras != ["proxy"]:
        continue                                  # only base + [proxy]
    marker = re.sub(r"\s*and\s+extra == 'proxy'|extra == 'proxy'\s*(and\s+)?", "", marker).strip()
    name = re.match(r"[A-Za-z0-9_.\-]+(\[[^\]]*\])?", spec.strip()).group(0)
    base = name.split("[")[0].lower()
    if base in relax:
        spec = name
    print(spec.strip() + (f" ; {marker}" if marker else ""))
PY
log "installing $(wc -l < "$DL/reqs.txt") requirements (relaxed: $RELAX)"
"$VENV/bin/pip" install --quiet -r "$DL/reqs.txt"
"$VENV/bin/pip" install --quiet --no-deps "$WHL"
cp "$DL/reqs.txt" "$VENV/margin-bench-reqs.txt"
"$VENV/bin/litellm" --version >/dev/null 2>&1 || { log "litellm does not run"; exit 1; }
touch "$VENV/.margin-bench-ok"
log "LiteLLM $LITELLM_VERSION installed in $VENV"
