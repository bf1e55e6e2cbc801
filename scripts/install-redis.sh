#!/usr/bin/env bash
# Installs redis-server (Debian's package) for the tests that start throwaway Redis servers, when it is missing.
#
# Runs only in CI (CI=true) or when asked (MARGIN_INSTALL_TEST_DEPS=1); otherwise it does nothing, and the tests
# that need Redis are skipped with a message saying how to install it. Needs root or sudo. The package's own
# service is not used: the tests run their own servers on free 127.0.0.1 ports.
# (The PostgreSQL branch's scripts/install-test-servers.sh installs redis-server too; this one is Redis only.)
set -euo pipefail

if [ "${CI:-}" != "true" ] && [ "${CI:-}" != "1" ] && [ "${MARGIN_INSTALL_TEST_DEPS:-}" != "1" ]; then
  exit 0
fi
command -v redis-server > /dev/null && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo > /dev/null; then
  sudo=(sudo -n)
else
  echo "install-redis: redis-server missing and not root (no sudo): run as root, or apt-get install redis-server" >&2
  exit 1
fi
if ! command -v apt-get > /dev/null; then
  echo "install-redis: redis-server missing and no apt-get here: install Redis (or Valkey) with this system's package manager" >&2
  exit 1
fi
echo "install-redis: installing redis-server (Debian package)" >&2
install() {
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server \
    > /tmp/install-redis.log 2>&1
}
if ! install; then
  "${sudo[@]}" apt-get update -q > /tmp/install-redis.log 2>&1 || true
  if ! install; then
    echo "install-redis: apt-get install redis-server failed; its output:" >&2
    tail -n 30 /tmp/install-redis.log >&2
    exit 1
  fi
fi
# The package starts its own service on port 6379; the tests never use it, and it is left as Debian set it up.
echo "install-redis: installed redis-server" >&2
