#!/usr/bin/env bash
# Idempotent dependency installer for the vxnet test suite on a fresh Debian 12 host.
#   - apt packages (apt-get update only when something is missing)
#   - Debian 13 (trixie) docker.io 26.1.x unpacked into a cache dir (system apt sources untouched)
#   - Debian 13's docker-compose 2.26.x (Compose v2, the Go binary) unpacked the same way, beside
#     Debian 12's docker-compose 1.29 (which stays the one on the PATH)
#   - npm ci when package.json or package-lock.json changed since the last install
# Env: VXT_CACHE (default /var/cache/vxnet-test), SKIP_NPM=1, SKIP_DOCKER26=1, SKIP_COMPOSE2=1
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VXT_CACHE:-/var/cache/vxnet-test}"
D26="$CACHE/docker26"
C2="$CACHE/compose2"
log() { printf '[install-deps] %s\n' "$*"; }
t0=$(date +%s)

[ "$(id -u)" = 0 ] || { echo "install-deps.sh must run as root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

# ---- 1. apt packages -------------------------------------------------------------------------
PKGS=(docker.io containerd runc etcd-server busybox-static docker-compose iproute2 iptables ipset nftables socat util-linux procps kmod ca-certificates dnsmasq-base)
missing=()
for p in "${PKGS[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$st" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  # Packages must not start services (docker.io would start a dockerd in the machine's namespace
  # where an init system exists): a temporary policy-rc.d, only if none is there.
  prc=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    prc=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' >"$prc"; chmod +x "$prc"
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$prc" ]; then rm -f "$prc"; trap - EXIT; fi
else
  log "apt packages present"
fi
# docker.io's postinst may have started a daemon on machines with an init system: we never rely on
# (or stop) a system dockerd here; test hosts run their own daemons in their own namespaces.

# ---- 2. docker 26.1 from Debian 13, unpacked ---------------------------------------------------
mirror_url() {
  # The URI the system already uses for the main Debian suite (not -security/-updates).
  # Override with VXT_DEBIAN_MIRROR.
  if [ -n "${VXT_DEBIAN_MIRROR:-}" ]; then printf '%s' "${VXT_DEBIAN_MIRROR%/}"; return; fi
  local codename u=""
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
    # deb822: one stanza per paragraph
    u=$(awk -v RS= -v c="$codename" '
      { uris=""; suites=""; enabled=1
        n = split($0, L, "\n")
        for (i = 1; i <= n; i++) {
          if (L[i] ~ /^[ \t]*#/) continue
          if (tolower(L[i]) ~ /^uris:/)    { sub(/^[^:]*:[ \t]*/, "", L[i]); uris = L[i] }
          if (tolower(L[i]) ~ /^suites:/)  { sub(/^[^:]*:[ \t]*/, "", L[i]); suites = " " L[i] " " }
          if (tolower(L[i]) ~ /^enabled:[ \t]*no/) enabled = 0
        }
        if (enabled && index(suites, " " c " ") && uris != "") { split(uris, U, /[ \t]+/); print U[1] }
      }' /etc/apt/sources.list.d/*.sources | grep -v security | head -n1 || true)
  fi
  if [ -z "$u" ]; then
    u=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk -v c="$codename" '$1=="deb" { s=""; for(i=2;i<=NF;i++) { if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; continue } if (s=="") { s=$i; continue } if ($i==c) print s; break } }' \
        | grep -v security | head -n1 || true)
  fi
  printf '%s' "${u%/}"
}

# Downloads one trixie package's .deb into $2/debs with a private apt configuration (the system's
# sources and lists stay untouched) and prints its path.
trixie_download() {
  local pkg=$1 A=$2 MIRROR
  MIRROR=$(mirror_url)
  [ -n "$MIRROR" ] || { echo "cannot find a Debian mirror URI in /etc/apt sources" >&2; exit 1; }
  rm -rf "$A"; mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/debs"
  cat > "$A/trixie.sources" <<SRC
Types: deb
URIs: $MIRROR
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  local APT=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$A" -o "Dir::State::Lists=$A/lists"
       -o "Dir::Cache=$A/cache" -o Acquire::Languages=none -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root
       -o Acquire::Check-Valid-Until=false)
  log "fetching $pkg from $MIRROR trixie" >&2
  apt-get "${APT[@]}" update -qq >&2
  ( cd "$A/debs" && apt-get "${APT[@]}" download -qq "$pkg" >&2 )
  rm -rf "$A/lists" "$A/cache"   # keep only the .deb
  ls "$A"/debs/"${pkg}"_*.deb 2>/dev/null | head -n1
}

if [ "${SKIP_DOCKER26:-0}" != 1 ]; then
  if [ -x "$D26/usr/sbin/dockerd" ] && "$D26/usr/sbin/dockerd" --version 2>/dev/null | grep -q ' 26\.1\.'; then
    log "docker 26.1 cached in $D26"
  else
    deb=$(trixie_download docker.io "$CACHE/apt-trixie")
    case "$deb" in *docker.io_26.1.*) ;; *) echo "trixie docker.io is not 26.1.x: $deb" >&2; exit 1 ;; esac
    rm -rf "$D26.tmp"; mkdir -p "$D26.tmp"
    dpkg -x "$deb" "$D26.tmp"
    "$D26.tmp/usr/sbin/dockerd" --version
    rm -rf "$D26"; mv "$D26.tmp" "$D26"
    log "docker 26.1 unpacked into $D26"
  fi
fi

# ---- 2b. Compose v2 from Debian 13, unpacked ---------------------------------------------------
# A static Go binary: it runs on Debian 12 as `docker-compose`, or as `docker compose` from a
# cli-plugins directory. Tests call it by path ($C2/usr/bin/docker-compose).
if [ "${SKIP_COMPOSE2:-0}" != 1 ]; then
  if [ -x "$C2/usr/bin/docker-compose" ] && "$C2/usr/bin/docker-compose" version --short 2>/dev/null | grep -q '^v\?2\.'; then
    log "compose v2 cached in $C2"
  else
    deb=$(trixie_download docker-compose "$CACHE/apt-trixie-compose")
    case "$deb" in *docker-compose_2.*) ;; *) echo "trixie docker-compose is not 2.x: $deb" >&2; exit 1 ;; esac
    rm -rf "$C2.tmp"; mkdir -p "$C2.tmp"
    dpkg -x "$deb" "$C2.tmp"
    # The package installs the CLI plugin; give it a plain docker-compose name too.
    if [ ! -e "$C2.tmp/usr/bin/docker-compose" ]; then
      plugin=$(find "$C2.tmp" -type f -name docker-compose | head -n1)
      [ -n "$plugin" ] || { echo "no docker-compose binary in $deb" >&2; exit 1; }
      mkdir -p "$C2.tmp/usr/bin"; cp "$plugin" "$C2.tmp/usr/bin/docker-compose"
    fi
    "$C2.tmp/usr/bin/docker-compose" version
    rm -rf "$C2"; mv "$C2.tmp" "$C2"
    log "compose $("$C2/usr/bin/docker-compose" version --short) unpacked into $C2"
  fi
fi

# ---- 3. node modules ---------------------------------------------------------------------------
if [ "${SKIP_NPM:-0}" != 1 ]; then
  cd "$REPO_DIR"
  command -v npm >/dev/null || { echo "npm not found: install Node.js 20 first" >&2; exit 1; }
  bash scripts/npm-deps.sh   # does nothing when package-lock.json is unchanged since the last install
fi

# ---- 4. kernel modules the tests need (best effort; may be built in) -------------------------
for m in br_netfilter bridge veth vxlan; do modprobe -q "$m" 2>/dev/null || true; done

log "done in $(( $(date +%s) - t0 ))s"
