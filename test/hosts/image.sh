#!/usr/bin/env bash
# Build the test image vxt-busybox:local (busybox-static + symlinks for all its applets) into a
# simulated host's dockerd. Idempotent: does nothing when the image is already there.
#   image.sh HOST [IMAGE]        HOST = a vxt-* host of test/hosts/host.sh, or a docker socket path
# The rootfs tarball is cached in $VXT_CACHE (default /var/cache/vxnet-test).
set -euo pipefail
HOST=${1:?usage: image.sh HOST [IMAGE]}
IMAGE=${2:-vxt-busybox:local}
STATE_ROOT="${VXT_STATE:-/var/lib/vxnet-test}"
CACHE="${VXT_CACHE:-/var/cache/vxnet-test}"
DOCKER_CLI="${DOCKER_CLI:-/usr/bin/docker}"
BUSYBOX=/bin/busybox
case "$HOST" in /*) SOCK=$HOST ;; *) SOCK="$STATE_ROOT/$HOST/docker.sock" ;; esac
[ -S "$SOCK" ] || { echo "[image.sh] no docker socket at $SOCK" >&2; exit 1; }
D=("$DOCKER_CLI" -H "unix://$SOCK")

if "${D[@]}" image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "[image.sh] $IMAGE present on $HOST" >&2; exit 0
fi
[ -x "$BUSYBOX" ] && "$BUSYBOX" --list >/dev/null || { echo "[image.sh] $BUSYBOX missing: apt-get install busybox-static" >&2; exit 1; }

mkdir -p "$CACHE"
TAR="$CACHE/vxt-busybox.tar"
(
  flock 9
  if [ ! -s "$TAR" ] || [ "$BUSYBOX" -nt "$TAR" ] || [ "$0" -nt "$TAR" ] || ! tar -tf "$TAR" ./usr/bin/socat >/dev/null 2>&1; then
    R=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$R"' EXIT
    mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,run,var/run}
    chmod 1777 "$R/tmp"
    cp "$BUSYBOX" "$R/bin/busybox"
    for a in $("$BUSYBOX" --list); do
      [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
    done
    # busybox nc has no UDP: Debian's socat (with the libraries ldd lists) serves and sends UDP.
    SOCAT=$(command -v socat || true)
    [ -n "$SOCAT" ] || { echo "[image.sh] socat missing: apt-get install socat" >&2; exit 1; }
    cp "$SOCAT" "$R/usr/bin/socat"
    for lib in $(ldd "$SOCAT" | awk '/=> \//{print $3} /^[ \t]*\/lib/{print $1}'); do
      mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$R/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
    tar --numeric-owner --owner=0 --group=0 -C "$R" -cf "$TAR.tmp" .
    mv "$TAR.tmp" "$TAR"
  fi
) 9>"$CACHE/.image.lock"

"${D[@]}" import -c 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' -c 'CMD ["sh"]' - "$IMAGE" <"$TAR" >/dev/null
echo "[image.sh] $IMAGE imported into $HOST" >&2
