#!/bin/sh
# /usr/sbin/iptables (and iptables-restore, a link to it) in the plugin's rootfs. vxnet's rules must go into the same backend as
# dockerd's (nf_tables or legacy x_tables): a packet passes both, and an ACCEPT in one does not
# undo the FORWARD DROP policy dockerd set in the other. The plugin cannot see the host's
# /etc/alternatives, so it looks for dockerd's chains. At boot the plugin starts before dockerd
# has made them, which is why this is decided at each call until they are seen, not once at start.
backend=${VXNET_IPTABLES:-auto}
cache=/run/vxnet/iptables-backend
if [ "$backend" = auto ]; then
  backend=$(cat "$cache" 2>/dev/null || true)
  if [ -z "$backend" ]; then
    # nft first: on an nft host, asking the legacy backend can load its kernel tables for nothing.
    if xtables-nft-multi iptables -w -S 2>/dev/null | grep -q '^-N DOCKER'; then
      backend=nft
    elif xtables-legacy-multi iptables -w -S 2>/dev/null | grep -q '^-N DOCKER'; then
      backend=legacy
    fi
    if [ -n "$backend" ]; then echo "$backend" >"$cache" 2>/dev/null || true; fi
  fi
  # dockerd without --iptables: nothing to match; nf_tables is every current distribution's default.
  backend=${backend:-nft}
fi
tool=$(basename "$0")
case "$tool" in iptables | iptables-restore) ;; *) tool=iptables ;; esac
case "$backend" in
  nft | legacy) exec "xtables-$backend-multi" "$tool" "$@" ;;
  *) echo "iptables: VXNET_IPTABLES must be auto, nft or legacy, not \"$backend\"" >&2; exit 2 ;;
esac
