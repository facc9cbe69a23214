#!/usr/bin/env bash
# Every vxnet test, on a fresh Debian/Ubuntu host: installs what the tests need, builds, then runs
#   unit         pure logic
#   integration  the real kernel, inside a private network namespace (and a real etcd)
#   e2e          real dockerds (20.10 and 26.1) in simulated hosts
# Ends with one line "N passed, N failed". Exit status is non-zero if anything failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ "$(id -u)" = 0 ] || { echo "the tests need root (network namespaces, dockerd): run as root" >&2; exit 1; }

bash scripts/install-deps.sh || { echo "installing test dependencies failed" >&2; exit 1; }
npm run build --silent || { echo "build failed" >&2; exit 1; }

RESULTS=$(mktemp -d /tmp/vxnet-results.XXXXXX)
INT_NS=vxt-int
status=0

cleanup() {
  ip netns del "$INT_NS" 2>/dev/null || true
  bash test/hosts/host.sh down-all >/dev/null 2>&1 || true
}
trap cleanup EXIT

# A layer that hangs (an open handle keeps jest alive) fails at its time limit instead of using
# up CI's 90 minutes; --forceExit ends jest once its tests are done.
layer() { # name, minutes, then the command
  local name=$1 minutes=$2; shift 2
  echo "=== $name ==="
  timeout --kill-after=30 "${minutes}m" "$@" --forceExit --json --outputFile="$RESULTS/$name.json" || {
    local rc=$?
    [ "$rc" -ge 124 ] && echo "$name: stopped after ${minutes} minutes" >&2
    status=1
    [ -f "$RESULTS/$name.json" ] || echo '{"numPassedTests":0,"numFailedTests":1,"numPendingTests":0,"numTodoTests":0,"numFailedTestSuites":1,"numRuntimeErrorTestSuites":0}' >"$RESULTS/$name.json"
  }
}

layer unit 10 npx jest --selectProjects unit
# The dataplane tests make links, rules and namespaces: they run inside a throwaway netns so
# nothing they do can reach the machine's own interfaces.
ip netns del "$INT_NS" 2>/dev/null || true
ip netns add "$INT_NS"
ip -n "$INT_NS" link set lo up
layer integration 20 ip netns exec "$INT_NS" npx jest --selectProjects integration --runInBand
ip netns del "$INT_NS"
layer e2e 40 npx jest --selectProjects e2e --runInBand

node -e '
  const fs = require("fs"); let p = 0, f = 0, s = 0, suites = 0;
  for (const file of fs.readdirSync(process.argv[1])) {
    const r = JSON.parse(fs.readFileSync(`${process.argv[1]}/${file}`, "utf8"));
    p += r.numPassedTests; f += r.numFailedTests; s += r.numPendingTests + r.numTodoTests;
    suites += r.numFailedTestSuites;
    if (r.numRuntimeErrorTestSuites) f += r.numRuntimeErrorTestSuites;
  }
  console.log(`${p} passed, ${f} failed` + (s ? `, ${s} skipped` : ""));
' "$RESULTS"
rm -rf "$RESULTS"
exit $status
