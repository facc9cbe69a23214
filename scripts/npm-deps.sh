#!/usr/bin/env bash
# Installs the npm dependencies exactly as package-lock.json says (`npm ci`), and only when the
# lock changed since the last install: the lock's hash is kept in node_modules/.vxnet-lock.sha256.
# A hash, not mtimes: a `git checkout` or a fresh clone gives every file a new mtime, and comparing
# mtimes made every `npm start` install again.
# The lock lists every platform's optional bindings (e.g. unrs-resolver's), so `npm ci` accepts it
# on a fresh clone with npm 10 and 11; regenerate it from scratch (rm -rf node_modules
# package-lock.json; npm install) rather than on top of an existing node_modules, which makes npm
# drop the other platforms' entries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STAMP=node_modules/.vxnet-lock.sha256
want=$(sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ "${1:-}" != --force ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "installing npm dependencies (npm ci)" >&2
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$STAMP"
