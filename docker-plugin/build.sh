#!/usr/bin/env bash
# Builds the managed (v2) plugin offline and creates it in a dockerd:
#
#   docker-plugin/build.sh [--name NAME] [--dir DIR] [--no-build] [--no-create] [--docker CMD...]
#
#   --name NAME    plugin reference (default vxnet/vxnet:latest)
#   --dir DIR      assemble config.json + rootfs/ in DIR and keep it (default: a temporary folder,
#                  removed at the end); DIR must be empty, missing, or an earlier build
#   --no-build     use dist/ as it is (default: `npm run build` first)
#   --no-create    only assemble (with --dir): `docker plugin create NAME DIR` later, on any dockerd
#   --docker CMD   the docker CLI to use, with its arguments; takes every remaining argument
#                  (default: docker), e.g. --docker docker -H unix:///srv/d1/docker.sock
#
# Nothing is pulled: the rootfs is this machine's node binary, iptables (nf_tables and legacy), ipset, tc and
# busybox with the libraries ldd lists, the compiled driver, and the production part of the
# existing node_modules (pruned in a copy; the repository's node_modules is not touched).
# Needs root (chroot smoke test, rootfs owned by root).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=vxnet/vxnet:latest
DIR=""
BUILD=1
CREATE=1
DOCKER=(docker)
while [ $# -gt 0 ]; do
  case "$1" in
    --name) NAME=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-create) CREATE=0; shift ;;
    --docker) shift; DOCKER=("$@"); [ $# -gt 0 ] || { echo "build.sh: --docker needs a command" >&2; exit 2; }; break ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
die() { echo "build.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (the rootfs must be owned by root)"
[ $CREATE = 1 ] || [ -n "$DIR" ] || die "--no-create needs --dir (else the result is thrown away)"

# Idempotent: a disabled plugin of that name is replaced; an enabled one may be in use. Asked
# first, so that a refusal comes before the build rather than after it.
existing=""
if [ $CREATE = 1 ]; then
  existing=$("${DOCKER[@]}" plugin inspect --format '{{.Enabled}}' "$NAME" 2>/dev/null || true)
  [ "$existing" != true ] || die "plugin $NAME is enabled: disable it first (docker plugin disable $NAME)"
fi

t0=$(date +%s%N)
if [ -z "$DIR" ]; then
  DIR=$(mktemp -d /var/tmp/vxnet-plugin.XXXXXX)
  trap 'rm -rf --one-file-system "$DIR"' EXIT
else
  mkdir -p "$DIR"
  # Only ever wipe a folder that holds nothing but an earlier build.
  [ -z "$(ls -A "$DIR" | grep -vx -e config.json -e rootfs)" ] || die "$DIR holds other files; give an empty or new folder"
  rm -rf --one-file-system "${DIR:?}/rootfs" "$DIR/config.json"
fi
ROOTFS=$DIR/rootfs

if [ $BUILD = 1 ]; then (cd "$REPO" && npm run build --silent); fi
[ -f "$REPO/dist/src/main.js" ] || die "$REPO/dist/src/main.js is missing: run npm run build"

NODE=$(command -v node) || die "node not found"
IPT_NFT=$(command -v xtables-nft-multi) || die "xtables-nft-multi not found (apt-get install iptables)"
IPT_LEGACY=$(command -v xtables-legacy-multi) || die "xtables-legacy-multi not found (apt-get install iptables)"
BUSYBOX=$(command -v busybox) || die "busybox not found (apt-get install busybox-static)"
IPSET=$(command -v ipset) || die "ipset not found (apt-get install ipset)"
NFT=$(command -v nft) || die "nft not found (apt-get install nftables)"
TC=$(command -v tc) || die "tc not found (apt-get install iproute2)"

# Copies a binary or library and every library ldd lists for it (the loader too) to the same
# paths in the rootfs, so the loader finds them where it would on this machine.
copy_libs() {
  local f lib
  for f in "$@"; do
    for lib in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true); do
      [ -e "$ROOTFS$lib" ] || cp -L --parents "$lib" "$ROOTFS"
    done
  done
}

mkdir -p "$ROOTFS"/{app,bin,dev,etc,proc,sys,root,usr/local/bin,usr/sbin,run/docker/plugins,var/lib/vxnet}
install -d -m 1777 "$ROOTFS/tmp"
ln -s ../run "$ROOTFS/var/run"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\n' >"$ROOTFS/etc/group"
printf 'hosts: files dns\n' >"$ROOTFS/etc/nsswitch.conf"
# iptables -S prints protocol names from it.
[ ! -f /etc/protocols ] || cp /etc/protocols "$ROOTFS/etc/"

# Node and the driver.
cp "$NODE" "$ROOTFS/usr/local/bin/node"
copy_libs "$NODE"
cp -a "$REPO/package.json" "$REPO/package-lock.json" "$ROOTFS/app/"
mkdir -p "$ROOTFS/app/dist"
cp -a "$REPO/dist/src" "$ROOTFS/app/dist/"
cp -a "$REPO/node_modules" "$ROOTFS/app/"
# Prune in the copy only; --offline: nothing is fetched, packages are only removed.
(cd "$ROOTFS/app" && npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
# Native addons (netlink's binding among them) need their libraries too.
while IFS= read -r addon; do copy_libs "$addon"; done < <(find "$ROOTFS/app/node_modules" -name '*.node' -type f)

# iptables, both backends (iptables.sh picks the one dockerd uses), with their extension modules.
cp "$IPT_NFT" "$IPT_LEGACY" "$ROOTFS/usr/sbin/"
copy_libs "$IPT_NFT" "$IPT_LEGACY"
for xt in /usr/lib/*/xtables /usr/lib64/xtables /usr/lib/xtables; do
  if [ -d "$xt" ]; then mkdir -p "$ROOTFS$xt"; cp -a "$xt/." "$ROOTFS$xt/"; copy_libs "$xt"/*.so; break; fi
done
install -m 755 "$REPO/docker-plugin/iptables.sh" "$ROOTFS/usr/sbin/iptables"
ln -s iptables "$ROOTFS/usr/sbin/iptables-restore"
# ipset: the per-network part of the firewall (sets are not tied to an iptables backend).
cp "$IPSET" "$ROOTFS/usr/sbin/ipset"
copy_libs "$IPSET"
# nft: the anti-spoofing and policy tables (nftables; bridge and inet families).
cp "$NFT" "$ROOTFS/usr/sbin/nft"
copy_libs "$NFT"
# tc: the redirect fast path's blocks (--fast-path auto, the default, and redirect), and their removal at every start.
# In /usr/sbin, ahead of busybox's own tc in PATH (which has neither -batch nor shared blocks).
cp "$TC" "$ROOTFS/usr/sbin/tc"
copy_libs "$TC"

# busybox: the entrypoint's shell, and tools for `nsenter`-less debugging.
cp "$BUSYBOX" "$ROOTFS/bin/busybox"
copy_libs "$BUSYBOX"
chroot "$ROOTFS" /bin/busybox --install -s /bin
install -m 755 "$REPO/docker-plugin/entrypoint.sh" "$ROOTFS/usr/local/bin/vxnet-plugin"
cp "$REPO/docker-plugin/config.json" "$DIR/config.json"

# Smoke test inside the rootfs, with the plugin's bare environment: node loads the driver with
# its native binding; iptables runs (a read-only listing of this machine's rules; nft named so
# that no legacy table gets loaded here).
inroot() { chroot "$ROOTFS" /bin/env -i PATH=/usr/local/bin:/usr/sbin:/bin "$@"; }
inroot node -e 'require("/app/node_modules/netlink"); require("/app/dist/src/daemon")' \
  || die "node cannot load the driver inside the rootfs"
inroot node /app/dist/src/main.js help >/dev/null || die "vxnet help fails inside the rootfs"
inroot VXNET_IPTABLES=nft iptables -w -S >/dev/null || die "iptables (nft) fails inside the rootfs"
inroot xtables-legacy-multi iptables -V >/dev/null || die "iptables-legacy fails inside the rootfs"
inroot VXNET_IPTABLES=nft iptables-restore --version >/dev/null || die "iptables-restore fails inside the rootfs"
inroot ipset version >/dev/null || die "ipset fails inside the rootfs"
# nft as the driver runs it: a script on stdin, checked against the kernel (-c: nothing committed),
# and a JSON listing (libjansson).
printf 'add table bridge vxnet-build-check\n' | inroot nft -c -f - || die "nft fails inside the rootfs"
inroot nft -j list tables bridge >/dev/null || die "nft -j fails inside the rootfs"
inroot tc qdisc show >/dev/null || die "tc fails inside the rootfs"

size=$(du -sm "$ROOTFS" | cut -f1)
echo "build.sh: rootfs $size MB in $DIR/rootfs, assembled in $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2

[ $CREATE = 1 ] || exit 0
if [ "$existing" = false ]; then "${DOCKER[@]}" plugin rm "$NAME" >/dev/null; fi
t1=$(date +%s%N)
"${DOCKER[@]}" plugin create "$NAME" "$DIR" >/dev/null
echo "build.sh: created plugin $NAME (disabled) in $(( ($(date +%s%N) - t1) / 1000000 )) ms; next: docker plugin enable $NAME" >&2
