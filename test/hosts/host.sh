#!/usr/bin/env bash
# Simulated Docker hosts on one machine, for vxnet's end-to-end tests.
#
#   host.sh underlay-up                      netns vxt-ul with bridge br0 (no addresses, no routes out)
#   host.sh underlay-down [--force]          (kept while hosts are up, unless --force)
#   host.sh up NAME IP[/PFX] [--docker 20|26] [--no-docker]
#                                            netns NAME (must start with vxt-), eth0=IP on the underlay,
#                                            a private mount+UTS namespace (own /run, /etc/docker, /sys),
#                                            and (default) a dockerd of the chosen version (default 20).
#                                            Prints KEY=VALUE lines (same as `info`).
#   host.sh info NAME                        KEY=VALUE lines: NAME IP NETNS NS_PID DOCKER DOCKERD_PID
#                                            DOCKER_SOCK DOCKER_HOST STATE_DIR DATA_ROOT EXEC_ROOT LOG
#   host.sh exec NAME CMD...                 run CMD in the host's net+mount+UTS namespaces
#                                            (inside: `docker` talks to this host's dockerd)
#   host.sh docker-start NAME [--docker 20|26]   (re)start the host's dockerd (keeps its data)
#   host.sh docker-stop NAME [--kill]        stop the host's dockerd (SIGTERM, or SIGKILL) + its containerd
#   host.sh down NAME                        stop everything in the host, remove netns, mounts, data
#   host.sh down-all [--force]               down every host made by host.sh (has a state dir), then
#                                            the underlay; --force: every vxt-* netns
#   host.sh list                             names of running hosts made by host.sh
#
# Anything started in a host (`nsenter -t NS_PID -n -m -u`) sees the host's own /run/docker/plugins
# and SandboxKey paths. All state lives in $VXT_STATE/NAME (default /var/lib/vxnet-test/NAME).
# Env: VXT_STATE, VXT_CACHE (docker 26 location, see scripts/install-deps.sh), DOCKER_CLI,
#      VXT_DOCKERD_EXTRA (extra dockerd args, word-split), VXT_DOCKERD_TIMEOUT (s, default 60).
set -Eeuo pipefail
trap 'rc=$?; echo "[host.sh] ERROR: \"$BASH_COMMAND\" failed (rc $rc) at line $LINENO" >&2' ERR

STATE_ROOT="${VXT_STATE:-/var/lib/vxnet-test}"
CACHE="${VXT_CACHE:-/var/cache/vxnet-test}"
D26="$CACHE/docker26"
DOCKER_CLI="${DOCKER_CLI:-/usr/bin/docker}"
UL_NS=vxt-ul
UL_BR=br0
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '[host.sh] %s\n' "$*" >&2; }
die() { printf '[host.sh] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
mkdir -p "$STATE_ROOT"

netns_exists() { [ -e "/run/netns/$1" ]; }
check_name() {
  [[ "$1" =~ ^vxt-[a-z0-9][a-z0-9-]{0,24}$ ]] || die "host name must match vxt-[a-z0-9-]{1,25}: '$1'"
  [ "$1" != "$UL_NS" ] || die "'$UL_NS' is the underlay, not a host"
}
# Underlay-side veth name: <= 15 chars, derived from the host name.
ul_if() { printf 'vxu%s' "$(printf '%s' "$1" | cksum | awk '{printf "%08x", $1}')"; }
netns_ino() { stat -L -c %i "/run/netns/$1" 2>/dev/null || true; }
# Alive and not a zombie (the machine's pid 1 may reap orphans late; a zombie dockerd/containerd
# must not count as running, dockerd itself would reuse a "running" containerd from its pidfile).
pid_alive() {
  [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || return 1
  local st; st=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null || echo X)
  [ "$st" != Z ] && [ "$st" != X ]
}
# Is PID inside network namespace NAME?
pid_in_netns() {
  local pid=$1 ino; ino=$(netns_ino "$2")
  [ -n "$ino" ] && [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "net:[$ino]" ]
}
read_pid() { [ -f "$1" ] && tr -dc '0-9' <"$1" || true; }
# The namespace holder: a `sleep infinity` inside the host's netns, with its own mount namespace.
ns_pid() {
  local n=$1 p; p=$(read_pid "$STATE_ROOT/$n/ns.pid")
  if pid_alive "$p" && pid_in_netns "$p" "$n" && [ "$(readlink "/proc/$p/ns/mnt")" != "$(readlink /proc/1/ns/mnt)" ]; then
    echo "$p"
  fi
}
dockerd_pid() {
  local n=$1 p; p=$(read_pid "$STATE_ROOT/$n/docker.pid")
  if pid_alive "$p" && pid_in_netns "$p" "$n" && grep -q dockerd "/proc/$p/comm" 2>/dev/null; then echo "$p"; fi
}
wait_gone() { # wait_gone TIMEOUT_DECISECONDS PID...
  local t=$1; shift
  local p alive
  while [ "$t" -gt 0 ]; do
    alive=0
    for p in "$@"; do if pid_alive "$p"; then alive=1; fi; done
    [ $alive = 0 ] && return 0
    sleep 0.1; t=$((t - 1))
  done
  return 1
}
with_lock() { # with_lock FILE CMD...
  local f=$1; shift
  ( flock 9; "$@" ) 9>"$f"
}

# ------------------------------------------------------------------------------------------------
underlay_up_locked() {
  if ! netns_exists "$UL_NS"; then ip netns add "$UL_NS"; fi
  ip -n "$UL_NS" link set lo up
  if ! ip -n "$UL_NS" link show "$UL_BR" >/dev/null 2>&1; then
    ip -n "$UL_NS" link add "$UL_BR" type bridge
  fi
  ip -n "$UL_NS" link set "$UL_BR" up
  # The underlay is a plain switch: frames crossing it are not firewalled.
  ip netns exec "$UL_NS" sh -c 'for f in /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/bridge/bridge-nf-call-ip6tables /proc/sys/net/bridge/bridge-nf-call-arptables; do [ -w $f ] && echo 0 >$f; done; true'
}
cmd_underlay_up() { with_lock "$STATE_ROOT/.underlay.lock" underlay_up_locked; log "underlay $UL_NS/$UL_BR up"; }
cmd_underlay_down() { # refuses (and succeeds) while hosts made by host.sh exist, unless --force
  local left="" d
  for d in "$STATE_ROOT"/vxt-*; do [ -d "$d" ] && left="$left $(basename "$d")"; done
  if [ -n "$left" ] && [ "${1:-}" != --force ]; then log "underlay kept: hosts still up:$left"; return 0; fi
  if netns_exists "$UL_NS"; then ip netns del "$UL_NS"; fi
  log "underlay down"
}

# ------------------------------------------------------------------------------------------------
start_holder() { # start_holder NAME
  local n=$1 S="$STATE_ROOT/$1"
  rm -f "$S/ns.pid" "$S/ready"
  mkdir -p "$S/.cg"
  # Inside the netns: new mount + UTS namespace (all mounts private), then
  #  - fresh sysfs for this netns (with the machine's cgroup tree moved back under it),
  #  - private tmpfs over /run (=> own /run/docker/plugins, /run/containerd, xtables lock, ...)
  #  - private tmpfs over /etc/docker (no daemon.json / plugin specs from the machine)
  #  - hostname = NAME
  # then publish our pid and become `sleep infinity` (the namespace holder).
  local script='
set -e
S="$1"; N="$2"
mount --rbind /sys/fs/cgroup "$S/.cg"
mount -t sysfs sysfs /sys
mount --move "$S/.cg" /sys/fs/cgroup
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/lock /run/docker/plugins
mkdir -p /etc/docker && mount -t tmpfs -o mode=755 tmpfs /etc/docker
hostname "$N"
echo $$ > "$S/ns.pid"
touch "$S/ready"
exec sleep infinity
'
  mkdir -p /etc/docker
  setsid nsenter --net="/run/netns/$n" -- unshare --mount --uts --propagation private \
    bash -c "$script" holder "$S" "$n" </dev/null >>"$S/holder.log" 2>&1 &
  local i
  for i in $(seq 1 100); do
    [ -f "$S/ready" ] && break
    sleep 0.05
  done
  [ -n "$(ns_pid "$n")" ] || { cat "$S/holder.log" >&2; die "namespace holder for $n did not start"; }
}

nsx() { # nsx NAME CMD... : run in host NAME's namespaces
  local p; p=$(ns_pid "$1"); [ -n "$p" ] || die "host $1 is not up"
  shift
  nsenter -t "$p" -n -m -u -- "$@"
}

docker_start() { # docker_start NAME VERSION
  local n=$1 ver=$2 S="$STATE_ROOT/$1"
  local p; p=$(dockerd_pid "$n"); [ -z "$p" ] || die "dockerd of $n already running (pid $p)"
  local bin path
  case "$ver" in
    20) bin=/usr/sbin/dockerd; path="$SYS_PATH" ;;
    26) bin="$D26/usr/sbin/dockerd"; path="$D26/usr/sbin:$SYS_PATH"
        [ -x "$bin" ] || die "docker 26 not found in $D26: run scripts/install-deps.sh" ;;
    *) die "unknown docker version '$ver' (20|26)" ;;
  esac
  echo "$ver" >"$S/docker.version"
  mkdir -p "$S/data" "$S/exec"
  rm -f "$S/docker.pid" "$S/docker.sock"
  # A containerd left over from a killed dockerd blocks the next one: stop it by pid.
  local cps; cps=$(containerd_pids "$n" | tr '\n' ' ')
  if [ -n "${cps// }" ]; then log "stopping lingering containerd $cps of $n"; kill -9 $cps 2>/dev/null || true; wait_gone 50 $cps || true; fi
  rm -f "$S/exec/containerd/containerd.pid"
  # A real host: dockerd turns ip_forward on itself and therefore sets FORWARD policy DROP.
  nsx "$n" sh -c 'echo 0 >/proc/sys/net/ipv4/ip_forward; echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables; echo 1 >/proc/sys/net/bridge/bridge-nf-call-ip6tables' 2>/dev/null || true
  local args=(
    --data-root "$S/data" --exec-root "$S/exec" --pidfile "$S/docker.pid"
    -H "unix://$S/docker.sock" -H unix:///run/docker.sock
    --cgroup-parent "/$n" --init-path /usr/bin/docker-init
    --iptables=true --ip-forward=true --storage-driver overlay2
    --log-level "${VXT_DOCKERD_LOG_LEVEL:-info}"
  )
  # shellcheck disable=SC2206
  [ -z "${VXT_DOCKERD_EXTRA:-}" ] || args+=(${VXT_DOCKERD_EXTRA})
  echo "=== $(date -Is) start dockerd $ver" >>"$S/dockerd.log"
  local hp; hp=$(ns_pid "$n")
  setsid nsenter -t "$hp" -n -m -u -- env -i PATH="$path" HOME=/root "$bin" "${args[@]}" \
    </dev/null >>"$S/dockerd.log" 2>&1 &
  local launcher=$! t0 v=""
  t0=$(date +%s%N)
  local deadline=$(( $(date +%s) + ${VXT_DOCKERD_TIMEOUT:-60} ))
  while :; do
    if [ -S "$S/docker.sock" ]; then
      v=$("$DOCKER_CLI" -H "unix://$S/docker.sock" version --format '{{.Server.Version}}' 2>/dev/null || true)
      [ -n "$v" ] && break
    fi
    if ! pid_alive "$launcher" && [ -z "$(dockerd_pid "$n")" ]; then
      tail -n 30 "$S/dockerd.log" >&2; die "dockerd of $n exited"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then tail -n 30 "$S/dockerd.log" >&2; die "dockerd of $n not ready in time"; fi
    sleep 0.1
  done
  case "$v" in "$ver".*) ;; *) die "dockerd of $n reports version $v, expected $ver.x" ;; esac
  # Verify the real-host traps are set.
  local pol; pol=$( (nsx "$n" iptables -S FORWARD 2>/dev/null || true) | head -n1)
  if [ "$pol" != "-P FORWARD DROP" ]; then
    log "WARNING: dockerd of $n left '$pol'; setting FORWARD DROP as on a real host"
    nsx "$n" iptables -P FORWARD DROP
  fi
  [ "$(nsx "$n" cat /proc/sys/net/bridge/bridge-nf-call-iptables)" = 1 ] || die "bridge-nf-call-iptables is off in $n"
  log "dockerd $v of $n ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms (pid $(dockerd_pid "$n"))"
}

containerd_pids() { # containerd(s) started by this host's dockerd (its managed containerd)
  local n=$1 S="$STATE_ROOT/$1" p f out=""
  for f in "$S/exec/containerd/containerd.pid" "$S/exec/containerd/daemon/"*.pid; do
    p=$(read_pid "$f")
    if pid_alive "$p" && pid_in_netns "$p" "$n"; then out="$out $p"; fi
  done
  # Fallback: any containerd in the host's netns
  for p in $(ip netns pids "$n" 2>/dev/null || true); do
    if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = containerd ]; then out="$out $p"; fi
  done
  printf '%s\n' $out | sort -u | grep . || true
}

kill_containers() { # SIGKILL every process in the host's container cgroups
  local n=$1 d pids
  for d in /sys/fs/cgroup/*/"$n" /sys/fs/cgroup/"$n"; do
    [ -d "$d" ] || continue
    pids=$( (find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null || true) | sort -u)
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  done
}
rm_cgroups() {
  local n=$1 d
  for d in /sys/fs/cgroup/*/"$n" /sys/fs/cgroup/"$n"; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

docker_stop() { # docker_stop NAME [kill]
  local n=$1 mode=${2:-term} S="$STATE_ROOT/$1"
  netns_exists "$n" || return 0
  local dp cps; dp=$(dockerd_pid "$n"); cps=$(containerd_pids "$n" | tr '\n' ' ')
  if [ -n "$dp" ]; then
    if [ "$mode" = kill ]; then
      kill -9 "$dp" 2>/dev/null || true
    else
      kill -TERM "$dp" 2>/dev/null || true
      wait_gone 200 "$dp" || { log "dockerd $dp of $n ignored SIGTERM for 20 s: SIGKILL"; kill -9 "$dp" 2>/dev/null || true; }
    fi
    wait_gone 50 "$dp" || true
  fi
  # A managed containerd normally exits with dockerd; after a kill it lingers and blocks the next one.
  if [ "$mode" = kill ]; then
    [ -z "$cps" ] || kill -9 $cps 2>/dev/null || true
  else
    wait_gone 30 $cps || { kill -9 $cps 2>/dev/null || true; }
  fi
  # Stale pidfiles (a zombie's pid counts as running for dockerd, which would then wait 15 s for
  # a containerd that is gone).
  if [ -z "$(containerd_pids "$n")" ]; then rm -f "$S/exec/containerd/containerd.pid"; fi
  rm -f "$S/docker.pid"
}

# ------------------------------------------------------------------------------------------------
# Every process that belongs to host NAME: in its netns; in its mount namespace (`host.sh exec`
# commands, plugins); or with its state dir in the command line (dockerd/containerd/shims, also
# when the netns was already deleted by someone else).
host_pids() {
  local n=$1 S="$STATE_ROOT/$1" out="" hp mntns p
  if netns_exists "$n"; then out="$(ip netns pids "$n" 2>/dev/null || true)"; fi
  hp=$(read_pid "$S/ns.pid")
  if pid_alive "$hp" && [ "$(cat "/proc/$hp/comm" 2>/dev/null)" = sleep ]; then
    mntns=$(readlink "/proc/$hp/ns/mnt" 2>/dev/null || true)
    if [ -n "$mntns" ] && [ "$mntns" != "$(readlink /proc/1/ns/mnt)" ] && [ "$mntns" != "$(readlink /proc/self/ns/mnt)" ]; then
      for p in /proc/[0-9]*; do
        if [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$mntns" ]; then out="$out ${p#/proc/}"; fi
      done
    fi
  fi
  if [ -d "$S" ]; then
    for p in $(grep -laF -- "$S/" /proc/[0-9]*/cmdline 2>/dev/null || true); do
      p=${p#/proc/}; out="$out ${p%/cmdline}"
    done
  fi
  for p in $out; do
    if [ "$p" != $$ ] && [ "$p" != "$PPID" ] && [ "$p" != "$BASHPID" ]; then echo "$p"; fi
  done | sort -u
}

cmd_down() {
  local n=$1 S="$STATE_ROOT/$1" t0; t0=$(date +%s%N)
  check_name "$n"
  kill_containers "$n"
  docker_stop "$n" term
  # Everything else still inside the host (driver, shims, docker-proxy, holder, ...).
  local pids; pids=$(host_pids "$n" | tr '\n' ' ')
  kill_containers "$n"
  # shellcheck disable=SC2086
  if [ -n "${pids// }" ]; then kill -9 $pids 2>/dev/null || true; wait_gone 50 $pids || true; fi
  rm_cgroups "$n"
  # Mounts that leaked into the machine's namespace (should be none).
  if [ -d "$S" ]; then
    awk -v s="$S" '$5 == s || index($5, s "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
  if netns_exists "$n"; then ip netns del "$n"; fi
  if netns_exists "$UL_NS"; then ip -n "$UL_NS" link del "$(ul_if "$n")" 2>/dev/null || true; fi
  if [ -d "$S" ]; then rm -rf --one-file-system "$S" || log "WARNING: could not remove all of $S"; fi
  log "host $n down in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}

cmd_up() {
  local n="" ip="" ver=20 docker=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --docker) ver=$2; shift 2 ;;
      --docker=*) ver=${1#*=}; shift ;;
      --no-docker) docker=0; shift ;;
      -*) die "unknown option $1" ;;
      *) if [ -z "$n" ]; then n=$1; elif [ -z "$ip" ]; then ip=$1; else die "extra argument $1"; fi; shift ;;
    esac
  done
  [ -n "$n" ] && [ -n "$ip" ] || die "usage: host.sh up NAME IP[/PFX] [--docker 20|26] [--no-docker]"
  check_name "$n"
  case "$ip" in */*) ;; *) ip="$ip/24" ;; esac
  case "$ver" in 20|26) ;; *) die "--docker must be 20 or 26" ;; esac
  local t0 S="$STATE_ROOT/$n" uif; t0=$(date +%s%N); uif=$(ul_if "$n")
  # Leftovers from an earlier run.
  if netns_exists "$n" || [ -e "$S" ]; then log "cleaning leftovers of $n"; cmd_down "$n"; fi
  # Two hosts with one address on the underlay break each other silently: refuse.
  local f other
  for f in "$STATE_ROOT"/vxt-*/ip; do
    [ -f "$f" ] || continue
    other=$(basename "$(dirname "$f")")
    if [ "$other" != "$n" ] && [ "$(cut -d/ -f1 "$f")" = "${ip%/*}" ] && netns_exists "$other"; then
      die "underlay address ${ip%/*} is already used by host $other"
    fi
  done
  cmd_underlay_up
  mkdir -p "$S"
  echo "$ip" >"$S/ip"
  ip netns add "$n"
  ip -n "$UL_NS" link del "$uif" 2>/dev/null || true
  ip -n "$UL_NS" link add "$uif" type veth peer name eth0 netns "$n"
  ip -n "$UL_NS" link set "$uif" master "$UL_BR" up
  ip -n "$n" link set lo up
  ip -n "$n" addr add "$ip" dev eth0
  ip -n "$n" link set eth0 up
  start_holder "$n"
  if [ $docker = 1 ]; then docker_start "$n" "$ver"; else rm -f "$S/docker.version"; fi
  log "host $n up in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  cmd_info "$n"
}

cmd_info() {
  local n=$1 S="$STATE_ROOT/$1"
  check_name "$n"
  netns_exists "$n" || die "host $n is not up"
  local hp dp ver=""; hp=$(ns_pid "$n"); dp=$(dockerd_pid "$n")
  [ -f "$S/docker.version" ] && ver=$(cat "$S/docker.version")
  cat <<EOF
NAME=$n
IP=$(cat "$S/ip" 2>/dev/null)
NETNS=/run/netns/$n
NS_PID=$hp
DOCKER=$ver
DOCKERD_PID=$dp
DOCKER_SOCK=$S/docker.sock
DOCKER_HOST=unix://$S/docker.sock
STATE_DIR=$S
DATA_ROOT=$S/data
EXEC_ROOT=$S/exec
LOG=$S/dockerd.log
EOF
}

all_vxt_netns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^vxt-' | grep -vx "$UL_NS" || true; }
cmd_list() { # hosts made by host.sh that are up
  local n; for n in $(all_vxt_netns); do if [ -d "$STATE_ROOT/$n" ]; then echo "$n"; fi; done
}

cmd_down_all() {
  # Ours = has a state dir (created before the netns at `up`). Other vxt-* namespaces (someone
  # else's experiments) are left alone unless --force.
  local force=0 n; [ "${1:-}" = --force ] && force=1
  for n in $(all_vxt_netns); do
    if [ ! -d "$STATE_ROOT/$n" ] && [ $force = 0 ]; then log "skipping netns $n: not made by host.sh (down-all --force removes it)"; fi
  done
  { for d in "$STATE_ROOT"/vxt-*; do [ -d "$d" ] && basename "$d"; done
    if [ $force = 1 ]; then all_vxt_netns; fi; } | sort -u |
    while read -r n; do [ -n "$n" ] && cmd_down "$n"; done
  cmd_underlay_down
}

# ------------------------------------------------------------------------------------------------
cmd=${1:-}; [ $# -gt 0 ] && shift
case "$cmd" in
  underlay-up) cmd_underlay_up ;;
  underlay-down) cmd_underlay_down "$@" ;;
  up) cmd_up "$@" ;;
  down) [ $# = 1 ] || die "usage: host.sh down NAME"; cmd_down "$1" ;;
  down-all) cmd_down_all "$@" ;;
  info) [ $# = 1 ] || die "usage: host.sh info NAME"; cmd_info "$1" ;;
  list) cmd_list ;;
  exec) [ $# -ge 2 ] || die "usage: host.sh exec NAME CMD..."; n=$1; shift; check_name "$n"; nsx "$n" "$@" ;;
  docker-start)
    [ $# -ge 1 ] || die "usage: host.sh docker-start NAME [--docker 20|26]"
    n=$1; shift; check_name "$n"
    ver=$(cat "$STATE_ROOT/$n/docker.version" 2>/dev/null || echo 20)
    [ "${1:-}" = --docker ] && ver=$2
    docker_start "$n" "$ver"; cmd_info "$n" ;;
  docker-stop)
    [ $# -ge 1 ] || die "usage: host.sh docker-stop NAME [--kill]"
    check_name "$1"; if [ "${2:-}" = --kill ]; then docker_stop "$1" kill; else docker_stop "$1" term; fi ;;
  *) sed -n '2,/^set -E/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
