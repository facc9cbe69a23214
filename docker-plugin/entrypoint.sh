#!/bin/sh
# Entrypoint of the managed plugin (/usr/local/bin/vxnet-plugin in its rootfs). Runs the driver as
# a child rather than exec'ing it, so that after `docker plugin disable` (SIGTERM) it can drop
# vxnet's firewall chains once no network uses them: the driver keeps its (empty) chains and their
# FORWARD jumps for its next start, which would outlive an uninstalled plugin.
set -u

# The iptables backend is decided again on each start (the host may have switched); see iptables.sh.
rm -f /run/vxnet/iptables-backend
mkdir -p /run/vxnet
node /app/dist/src/main.js run "$@" &
child=$!
# PID 1 of the plugin's namespace ignores signals it has no handler for: pass them on.
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
status=0
# wait returns early (status > 128) when the trap fires; wait again until the driver has exited.
while kill -0 "$child" 2>/dev/null; do
  wait "$child"
  status=$?
done

chain_used() { iptables -w -S "$1" 2>/dev/null | grep -q "^-A $1 "; }
if ! chain_used VXNET-FORWARD && ! chain_used VXNET-ISOLATION; then
  for chain in VXNET-FORWARD VXNET-ISOLATION; do
    while iptables -w -D FORWARD -m comment --comment vxnet -j "$chain" 2>/dev/null; do :; done
    iptables -w -X "$chain" 2>/dev/null || true
  done
fi
exit "$status"
