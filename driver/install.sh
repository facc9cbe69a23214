#!/usr/bin/env bash
# Installs vxnet as a host service (run as root, from a built checkout: npm run build):
#
#   driver/install.sh
#
#   $PREFIX/                         the application: dist/src, production node_modules, docs
#   $BINDIR/vxnet                    the CLI (vxnet doctor, vxnet status, ...), which reads the
#                                    settings in $SYSCONFDIR/vxnet.env as the service does
#   $UNITDIR/vxnet.service           the systemd unit, with this node's path, $PREFIX and $SYSCONFDIR
#   $SYSCONFDIR/vxnet.env            settings, from driver/vxnet.env.example; an existing file is
#                                    kept (the new example goes beside it as vxnet.env.example)
#
# Variables (defaults): PREFIX=/opt/vxnet BINDIR=/usr/local/bin SYSCONFDIR=/etc/vxnet
# UNITDIR=/etc/systemd/system NODE=$(command -v node), and DESTDIR, a staging root prepended to
# every path (packaging, tests). systemd is told (daemon-reload) only when it runs on this machine
# and DESTDIR is empty; nothing is enabled or started: the last lines say how.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${PREFIX:-/opt/vxnet}
BINDIR=${BINDIR:-/usr/local/bin}
SYSCONFDIR=${SYSCONFDIR:-/etc/vxnet}
UNITDIR=${UNITDIR:-/etc/systemd/system}
DESTDIR=${DESTDIR:-}
NODE=${NODE:-$(command -v node || true)}

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

[ -n "$DESTDIR" ] || [ "$(id -u)" = 0 ] || die "run as root (or set DESTDIR to stage the files)"
[ -n "$NODE" ] || die "node not found: install Node.js 20 or newer, or set NODE"
for p in "$PREFIX" "$BINDIR" "$SYSCONFDIR" "$UNITDIR" "$NODE"; do
  case "$p" in /*) ;; *) die "$p is not an absolute path" ;; esac
  # These paths go into the unit file and a sed expression: keep them plain.
  case "$p" in *[!A-Za-z0-9/._+-]*) die "$p: only letters, digits and / . _ + - are allowed" ;; esac
done
[ -f "$REPO/dist/src/main.js" ] || die "$REPO/dist/src/main.js is missing: run npm run build first"
[ -d "$REPO/node_modules" ] || die "$REPO/node_modules is missing: run npm ci first"

APP=$DESTDIR$PREFIX
# A fresh copy of the application, swapped in whole: a half-copied tree is never what runs.
mkdir -p "$(dirname "$APP")"
STAGE=$(mktemp -d "$(dirname "$APP")/.vxnet-install.XXXXXX")
trap 'rm -rf --one-file-system "$STAGE"' EXIT
mkdir -p "$STAGE/dist"
cp -a "$REPO/dist/src" "$STAGE/dist/"
find "$STAGE/dist" -name '*.map' -delete
cp -a "$REPO/package.json" "$REPO/package-lock.json" "$REPO/README.md" "$STAGE/"
[ ! -d "$REPO/docs" ] || cp -a "$REPO/docs" "$STAGE/"
cp -a "$REPO/node_modules" "$STAGE/"
# Prune in the copy only; --offline: nothing is fetched, packages are only removed.
(cd "$STAGE" && npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
chown -R 0:0 "$STAGE" 2>/dev/null || true
chmod -R u=rwX,go=rX "$STAGE"
rm -rf --one-file-system "$APP.old"
[ ! -e "$APP" ] || mv "$APP" "$APP.old"
mv "$STAGE" "$APP"
rm -rf --one-file-system "$APP.old"
trap - EXIT
say "application in $APP"

install -d -m 0755 "$DESTDIR$BINDIR"
# The CLI reads the service's settings, so `vxnet status` and `vxnet doctor` look at the socket,
# store and VTEP the service uses (flags still win: vxnet doctor --mtu 1400).
cat >"$DESTDIR$BINDIR/vxnet.tmp" <<WRAPPER
#!/bin/sh
if [ -r $SYSCONFDIR/vxnet.env ]; then set -a; . $SYSCONFDIR/vxnet.env; set +a; fi
# node's flags for the driver, unless vxnet.env gives others (src/node-options.ts).
export NODE_OPTIONS="\${NODE_OPTIONS:---max-semi-space-size=4}"
exec $NODE $PREFIX/dist/src/main.js "\$@"
WRAPPER
chmod 0755 "$DESTDIR$BINDIR/vxnet.tmp"
mv "$DESTDIR$BINDIR/vxnet.tmp" "$DESTDIR$BINDIR/vxnet"
say "command $BINDIR/vxnet"

install -d -m 0755 "$DESTDIR$UNITDIR"
sed -e "s#/usr/bin/node #$NODE #" -e "s#/opt/vxnet#$PREFIX#g" -e "s#/etc/vxnet/#$SYSCONFDIR/#g" "$REPO/driver/vxnet.service" >"$DESTDIR$UNITDIR/vxnet.service.tmp"
chmod 0644 "$DESTDIR$UNITDIR/vxnet.service.tmp"
mv "$DESTDIR$UNITDIR/vxnet.service.tmp" "$DESTDIR$UNITDIR/vxnet.service"
say "unit $UNITDIR/vxnet.service"

install -d -m 0755 "$DESTDIR$SYSCONFDIR"
if [ -e "$DESTDIR$SYSCONFDIR/vxnet.env" ]; then
  install -m 0644 "$REPO/driver/vxnet.env.example" "$DESTDIR$SYSCONFDIR/vxnet.env.example"
  say "kept $SYSCONFDIR/vxnet.env; the current example is $SYSCONFDIR/vxnet.env.example"
else
  install -m 0600 "$REPO/driver/vxnet.env.example" "$DESTDIR$SYSCONFDIR/vxnet.env"
  say "settings $SYSCONFDIR/vxnet.env (edit it before the first start)"
fi

# /run/systemd/system exists only while systemd is the running init (sd_booted(3)).
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
  say "systemd reloaded; next: systemctl enable --now vxnet, then vxnet doctor"
else
  say "systemd is not running here (or DESTDIR is set): nothing was reloaded or started."
  say "start it with your init system, or by hand: $BINDIR/vxnet run (it reads $SYSCONFDIR/vxnet.env)"
fi
