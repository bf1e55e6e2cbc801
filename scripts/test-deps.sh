#!/usr/bin/env bash
# What the test suite needs beyond Python packages: Debian's chromium, for the dashboard's browser tests
# (tests/e2e/test_dashboard.py drives it with Playwright; Playwright's own browser downloads are not used).
#
# Installs only in CI (CI=true) or when asked (MARGIN_INSTALL_TEST_DEPS=1); elsewhere it does nothing and the
# browser tests skip with a message saying how to install chromium. Exits non-zero, with a message, when the
# install fails, so CI stops here instead of failing later in a less clear way.
set -euo pipefail

# MARGIN_CHROMIUM: another path for the browser (the tests read it too); tests of this script use it.
CHROMIUM="${MARGIN_CHROMIUM:-/usr/bin/chromium}"

if [[ "${CI:-}" != "true" && "${CI:-}" != "1" && "${MARGIN_INSTALL_TEST_DEPS:-}" != "1" ]]; then
    exit 0
fi
if [[ -x "$CHROMIUM" ]]; then
    exit 0
fi

SUDO=()
if [[ "$(id -u)" != "0" ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "test-deps: $CHROMIUM is missing and installing it needs root (no sudo here): run 'apt-get install chromium' as root" >&2
        exit 1
    fi
    SUDO=(sudo)
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: $CHROMIUM is missing and this system has no apt-get: install Chromium so that $CHROMIUM exists" >&2
    exit 1
fi

install() {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
}

echo "test-deps: installing Debian's chromium for the dashboard's browser tests" >&2
if ! install 2>/dev/null; then
    # The package lists may be missing or stale (a fresh machine): refresh them once and try again.
    "${SUDO[@]}" apt-get update -qq >/dev/null
    if ! install; then
        echo "test-deps: 'apt-get install chromium' failed; the dashboard's browser tests need $CHROMIUM" >&2
        exit 1
    fi
fi
if [[ ! -x "$CHROMIUM" ]]; then
    echo "test-deps: chromium was installed but $CHROMIUM is not there; the browser tests expect it at that path" >&2
    exit 1
fi
