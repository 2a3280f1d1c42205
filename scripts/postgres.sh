#!/usr/bin/env bash
# A throwaway local PostgreSQL for trying and testing the several-nodes setup:
#
#   scripts/postgres.sh start [DIR]   initdb into DIR (default target/postgres) on a free port on
#                                     127.0.0.1, start it, create the database `auction`, and
#                                     print its URL (postgres://auction@127.0.0.1:PORT/auction)
#                                     as the last line
#   scripts/postgres.sh stop [DIR]    stop it (the folder stays; delete it to start afresh)
#   scripts/postgres.sh install       only make sure PostgreSQL is installed (`.ci/run` does
#                                     this once before the tests, which start their own)
#
# Installs Debian's package when no PostgreSQL is found (apt-get; needs root). initdb refuses to
# run as root, so as root the cluster is created and run as the `postgres` user. Trust
# authentication on 127.0.0.1 only, no other listener: for this machine's tests and demos, never
# for a server others can reach.
set -euo pipefail

cmd=${1:-start}
dir=${2:-target/postgres}
mkdir -p "$(dirname "$dir")"
dir=$(cd "$(dirname "$dir")" && pwd)/$(basename "$dir")

find_bin() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$found" ] && command -v pg_ctl >/dev/null 2>&1; then
    found=$(dirname "$(command -v pg_ctl)")
  fi
  echo "$found"
}

bin=$(find_bin)
if [ -z "$bin" ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "postgres.sh: no PostgreSQL found; install it (Debian: apt-get install postgresql)" >&2
    exit 1
  fi
  echo "postgres.sh: installing PostgreSQL (apt-get install postgresql)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postgresql >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }
  bin=$(find_bin)
  if [ -z "$bin" ]; then
    echo "postgres.sh: PostgreSQL could not be installed" >&2
    exit 1
  fi
fi

# As root, everything runs as `postgres`, which must own the folder.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  install)
    echo "PostgreSQL: $bin"
    ;;
  start)
    if [ ! -f "$dir/PG_VERSION" ]; then
      mkdir -p "$dir"
      if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
      as_owner "$bin/initdb" -D "$dir" -U auction -A trust --no-sync -E UTF8 >"$dir.initdb.log" 2>&1 || {
        cat "$dir.initdb.log" >&2
        exit 1
      }
    fi
    # Running already: its URL again.
    if as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1 && [ -f "$dir/port" ]; then
      echo "postgres://auction@127.0.0.1:$(cat "$dir/port")/auction"
      exit 0
    fi
    # A free port: one nothing answers on (tried again if another process takes it first).
    started=""
    for _ in 1 2 3 4 5; do
      port=$((20000 + RANDOM % 30000))
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
      if as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 30 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null; then
        started=yes
        break
      fi
    done
    if [ -z "$started" ]; then
      tail -n 20 "$dir/server.log" >&2
      exit 1
    fi
    echo "$port" >"$dir/port"
    if ! as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U auction -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'auction'" | grep -q 1; then
      as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U auction auction
    fi
    echo "postgres://auction@127.0.0.1:$port/auction"
    ;;
  stop)
    if [ -f "$dir/PG_VERSION" ]; then
      as_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
    fi
    ;;
  *)
    echo "usage: scripts/postgres.sh start|stop [DIR] | install" >&2
    exit 2
    ;;
esac
