#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for the tests and benchmarks:
#
#   tools/pg-test-cluster.sh start DIR [PORT]   # prints the URL to put in COUCHPAY_TEST_POSTGRES
#   tools/pg-test-cluster.sh stop DIR
#   tools/pg-test-cluster.sh crash DIR [PORT]   # stop -m immediate (no checkpoint), start again
#
# Needs Debian's `postgresql` package (initdb and pg_ctl in /usr/lib/postgresql/*/bin).
# As root the server runs as the `postgres` user, as PostgreSQL requires. fsync stays on:
# the numbers measured on it are those of a durable database.
set -euo pipefail

cmd=${1:?start or stop}
dir=${2:?data directory}
port=${3:-55432}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_server() {
  as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400 -c shared_buffers=256MB" \
    start >/dev/null
}

case $cmd in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$dir" -A trust -U postgres --no-locale -E UTF8 >/dev/null
    fi
    start_server
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  crash)
    as_pg "$bin/pg_ctl" -D "$dir" -m immediate stop >/dev/null
    start_server
    ;;
  stop)
    as_pg "$bin/pg_ctl" -D "$dir" -m fast stop >/dev/null
    ;;
  *)
    echo "usage: $0 start|stop|crash DIR [PORT]" >&2
    exit 2
    ;;
esac
