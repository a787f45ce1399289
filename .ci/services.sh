#!/usr/bin/env bash
# Make sure the services the tests talk to answer on loopback: PostgreSQL on 5432 (trust auth,
# database `test`) and Redis on 6379; and that Debian's Chromium, which tests/browser drives, is
# installed. Starts what is installed but stopped; installs what is missing (Debian, as root).
# Does nothing when all are there.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "services: need root to install $*" >&2; exit 1; fi
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! answers 5432; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q "restoration-tests" "$hba"; then
    # Loopback-only trust, as on the CI machines: the tests connect as `postgres` without a password.
    sed -i '1i host all all 127.0.0.1/32 trust # restoration-tests\nhost all all ::1/128 trust # restoration-tests' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
  for _ in $(seq 1 50); do answers 5432 && break; sleep 0.2; done
fi
if command -v psql >/dev/null && ! psql -h 127.0.0.1 -U postgres -d test -tAc "select 1" >/dev/null 2>&1; then
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "create database test" >/dev/null
fi

if ! answers 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp
  for _ in $(seq 1 50); do answers 6379 && break; sleep 0.2; done
fi

# tests/browser launch /usr/bin/chromium through Playwright (never Playwright's own downloads).
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
