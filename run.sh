#!/usr/bin/env bash
# Runs Couchpay on one desktop: the stub server (SQLite file ./couchpay.db, loopback),
# the TV window and the companion window. Close the TV window (or Ctrl-C) to stop all.
#
#   ./run.sh                      # everything on this machine, mDNS on loopback only
#   COUCHPAY_MDNS_INTERFACES=all ./run.sh   # also announce orders on the LAN
#
# Needs a desktop (X11 or Wayland). Extra arguments go to the TV (e.g. --fullscreen).
set -euo pipefail
cd "$(dirname "$0")"

cargo build -p server-stub -p tv-client -p phone-client \
    --bin couchpay-server --bin couchpay-tv --bin couchpay-gui

server="http://127.0.0.1:8080"
mdns="${COUCHPAY_MDNS_INTERFACES:-lo}"
# The TV takes `all` itself (and reads COUCHPAY_MDNS_INTERFACES too); the companion
# listens on every interface when given none.
tv_mdns=(--mdns-interface "$mdns")
phone_mdns=(--interface "$mdns")
if [ "$mdns" = all ]; then phone_mdns=(); fi

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# The developer console (http://127.0.0.1:8080/console) asks for this token.
admin_token="${COUCHPAY_ADMIN_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
COUCHPAY_ADMIN_TOKEN="$admin_token" target/debug/couchpay-server &
server_pid=$!
pids+=("$server_pid")
# A server that cannot start (say another Couchpay is already on port 8080) exits at
# once with one line saying why: stop here instead of opening windows on someone else's
# server. The server binds before it opens the database, so half a second is plenty.
sleep 0.5
if ! kill -0 "$server_pid" 2>/dev/null; then
  wait "$server_pid" || true
  echo "run.sh: the Couchpay server did not start (see the line above); nothing else was started." >&2
  exit 1
fi
echo "run.sh: developer console at $server/console (admin token: $admin_token)"
echo "run.sh: API reference at $server/docs (OpenAPI 3.1: $server/v1/openapi.json)"
# The TV and the companion retry with backoff until the server answers.
target/debug/couchpay-gui --server "$server" "${phone_mdns[@]}" &
pids+=($!)
# The demo TV is the demo Couchpay Box CPB-DEMO-0001 (see the README's demo devices), so
# its Device menu works out of the box.
COUCHPAY_DEVICE_ID="${COUCHPAY_DEVICE_ID:-CPB-DEMO-0001}" \
COUCHPAY_DEVICE_CREDENTIAL="${COUCHPAY_DEVICE_CREDENTIAL:-6429c267fab7d91deefa07ed93aeea55285b99e915223ec95220e0edec76afb5}" \
  target/debug/couchpay-tv --server "$server" "${tv_mdns[@]}" "$@"
