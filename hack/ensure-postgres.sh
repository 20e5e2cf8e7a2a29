#!/usr/bin/env bash
# Installs the PostgreSQL 15 server the device-store tests run (package
# internal/pgtest starts throwaway servers from its binaries). Does nothing
# when it is already installed. Debian/Ubuntu (apt-get); needs root or sudo.
set -euo pipefail
bin=${PGTEST_BIN_DIR:-/usr/lib/postgresql/15/bin}
if [ -x "$bin/postgres" ] && [ -x "$bin/initdb" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "ensure-postgres: $bin/postgres is missing and there is no apt-get: install PostgreSQL 15 and set PGTEST_BIN_DIR to its bin directory" >&2
  exit 1
fi
sudo=
if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
fi
echo "ensure-postgres: installing postgresql-15 (for $bin)" >&2
$sudo apt-get update -qq
# env, not export: sudo drops the caller's environment.
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
if [ ! -x "$bin/postgres" ]; then
  echo "ensure-postgres: postgresql-15 installed but $bin/postgres is missing" >&2
  exit 1
fi
