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
tv_mdns=(--mdns-interface "$mdns")
phone_mdns=(--interface "$mdns")
if [ "$mdns" = all ]; then tv_mdns=(); phone_mdns=(); fi

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

target/debug/couchpay-server &
pids+=($!)
# The TV and the companion retry with backoff until the server answers.
target/debug/couchpay-gui --server "$server" "${phone_mdns[@]}" &
pids+=($!)
target/debug/couchpay-tv --server "$server" "${tv_mdns[@]}" "$@"
