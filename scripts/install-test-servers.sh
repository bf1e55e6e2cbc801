#!/usr/bin/env bash
# Installs the database servers the test suite starts throwaway instances of (PostgreSQL for the ledger,
# Redis for the shared counters), from Debian's packages, when their binaries are missing.
#
# Runs only in CI (CI=true) or when asked (MARGIN_INSTALL_TEST_DEPS=1); otherwise it does nothing, and the
# tests that need a missing server are skipped with a message saying how to install it. Needs root or sudo.
# The packages' own clusters are not created or started: the tests run their own servers, on free ports.
set -euo pipefail

if [ "${CI:-}" != "true" ] && [ "${CI:-}" != "1" ] && [ "${MARGIN_INSTALL_TEST_DEPS:-}" != "1" ]; then
  exit 0
fi

missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || missing+=(postgresql)
command -v redis-server > /dev/null || missing+=(redis-server)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo > /dev/null; then
  sudo=(sudo -n)
else
  echo "install-test-servers: ${missing[*]} missing and not root (no sudo): run as root, or apt-get install ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get > /dev/null; then
  echo "install-test-servers: ${missing[*]} missing and no apt-get here: install the PostgreSQL server and Redis with this system's package manager" >&2
  exit 1
fi

# The postgresql package would create and start a cluster on port 5432: the tests need none of that.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  "${sudo[@]}" mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" | "${sudo[@]}" tee /etc/postgresql-common/createcluster.conf > /dev/null
fi

echo "install-test-servers: installing ${missing[*]} (Debian packages)" >&2
install() {
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confold "${missing[@]}" > /tmp/install-test-servers.log 2>&1
}
if ! install; then
  "${sudo[@]}" apt-get update -q > /tmp/install-test-servers.log 2>&1 || true
  if ! install; then
    echo "install-test-servers: apt-get install ${missing[*]} failed; its output:" >&2
    tail -n 30 /tmp/install-test-servers.log >&2
    exit 1
  fi
fi
echo "install-test-servers: installed ${missing[*]}" >&2
