#!/bin/sh
# pg_ctl wrapper for pytest-postgresql (conftest passes it as the `executable`).
#
# PostgreSQL refuses to run as uid 0, and CI containers run the tests as root. As root, this
# runs the real pg_ctl as an unprivileged OS user (PG_OS_USER, default `postgres`); as anyone
# else it simply execs the real pg_ctl.
# For `initdb` it hands the data directory's parent (pytest's tmp dir, which also holds the log
# file) to that user and adds o+x (traverse only, no listing) to its ancestors, which pytest
# creates 0700.
#
# The real pg_ctl: $PG_CTL_REAL, else the newest /usr/lib/postgresql/*/bin/pg_ctl (Debian/Ubuntu),
# else `pg_config --bindir`/pg_ctl, else pg_ctl on PATH (Homebrew, ...).
# Exit status 69 means "no PostgreSQL server binaries here": conftest skips (or fails on CI).
set -eu

find_pg_ctl() {
  if [ -n "${PG_CTL_REAL:-}" ]; then echo "$PG_CTL_REAL"; return; fi
  found=$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$found" ] && command -v pg_config >/dev/null 2>&1; then
    found="$(pg_config --bindir 2>/dev/null)/pg_ctl"
  fi
  if [ ! -x "$found" ]; then found=$(command -v pg_ctl 2>/dev/null || true); fi
  echo "$found"
}

PG_CTL=$(find_pg_ctl)
if [ -z "$PG_CTL" ] || [ ! -x "$PG_CTL" ]; then
  echo "pg_ctl_nonroot.sh: no PostgreSQL server binaries (pg_ctl) found; install PostgreSQL" \
       "(Debian: apt-get install postgresql) or set PG_CTL_REAL" >&2
  exit 69
fi

[ "$(id -u)" -ne 0 ] && exec "$PG_CTL" "$@"

RUN_AS="${PG_OS_USER:-postgres}"
if ! id -u "$RUN_AS" >/dev/null 2>&1; then
  echo "pg_ctl_nonroot.sh: running as root and OS user '$RUN_AS' does not exist" \
       "(create it, or set PG_OS_USER to an unprivileged user)" >&2
  exit 1
fi

DATA=""
prev=""
for arg in "$@"; do
  case "$prev" in -D|--pgdata) DATA="$arg" ;; esac
  case "$arg" in --pgdata=*) DATA="${arg#--pgdata=}" ;; -D?*) DATA="${arg#-D}" ;; esac
  prev="$arg"
done

if [ "${1:-}" = initdb ] && [ -n "$DATA" ]; then
  parent=$(dirname "$DATA")
  chown "$RUN_AS:" "$parent"
  dir="$parent"
  while dir=$(dirname "$dir"); [ "$dir" != / ] && [ "$dir" != . ]; do
    chmod o+x "$dir"
  done
fi

exec setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups "$PG_CTL" "$@"
