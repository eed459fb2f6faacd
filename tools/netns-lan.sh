#!/usr/bin/env bash
# Runs a command inside the test network namespace of the LAN-mode test: call it as
# `unshare --net tools/netns-lan.sh CMD...` (root, or a user namespace). The namespace
# has `lo` and a veth pair cp0 (10.123.0.1/24) <-> cp1 (10.123.0.2/24): a LAN of its own,
# so "every interface" reaches no real network.
set -e
ip link set lo up
ip link add cp0 type veth peer name cp1
ip addr add 10.123.0.1/24 dev cp0
ip addr add 10.123.0.2/24 dev cp1
ip link set cp0 up
ip link set cp1 up
exec "$@"
