#!/bin/sh
# Entrypoint of the managed plugin (/usr/local/bin/vxnet-plugin in its rootfs). Runs the driver as
# a child rather than exec'ing it, so that after `docker plugin disable` (SIGTERM) it can drop
# vxnet's firewall chains and sets (and its nftables policy table) once no network uses them: the driver keeps them for its next
# start, and they would outlive an uninstalled plugin.
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

# What it decides goes to dockerd's log (the plugin's stderr), so a cleanup that did not happen
# says why.
say() { echo "vxnet-plugin: $*" >&2; }
say "driver exited with status $status"

# No vxnet network left on this host (no vxnet bridge, nothing in vxnet's sets): drop the constant
# chains, their jumps, the sets and the anti-spoofing table (and the per-bridge chain of an earlier version, if any).
bridges=$(ip -o link show 2>/dev/null | grep -o ': vxb-[^:@]*' | tr -d ': ' | tr '\n' ' ')
entries=$(ipset save 2>/dev/null | grep '^add vxnet-' | head -n 5 | tr '\n' ';')
if [ -n "$bridges" ] || [ -n "$entries" ]; then
  say "cleanup skipped: vxnet networks remain (bridges: ${bridges:-none}; set entries: ${entries:-none})"
else
  say "cleanup: removing vxnet's chains, sets and nftables tables"
  for chain in VXNET-ISOLATION VXNET-FORWARD; do
    while iptables -w -D FORWARD -m comment --comment vxnet -j "$chain" 2>/dev/null; do :; done
    while iptables -w -D DOCKER-USER -m comment --comment vxnet -j "$chain" 2>/dev/null; do :; done
    iptables -w -F "$chain" 2>/dev/null || true
    iptables -w -X "$chain" 2>/dev/null || true
  done
  while iptables -w -t nat -D POSTROUTING -m comment --comment vxnet -j VXNET-MASQ 2>/dev/null; do :; done
  iptables -w -t nat -F VXNET-MASQ 2>/dev/null || true
  iptables -w -t nat -X VXNET-MASQ 2>/dev/null || true
  for set in vxnet-egress vxnet-masq; do ipset destroy "$set" 2>/dev/null || true; done
  # The anti-spoofing table (its elements went with the containers; the table itself stays for
  # the driver's next start otherwise). add+delete: done whether or not it is there.
  printf 'add table bridge vxnet-antispoof\ndelete table bridge vxnet-antispoof\n' | nft -f - 2>/dev/null || true
  # The policy table (src/dataplane/policy-table.ts): kept by a stopping driver so that rules hold
  # while it is away; with no vxnet network left it polices nothing.
  # Its bridge-family twin holds the fast path (conntrack skipped between unpoliced containers).
  nft delete table inet vxnet-policy 2>/dev/null || true
  nft delete table bridge vxnet-policy 2>/dev/null || true
fi
exit "$status"
