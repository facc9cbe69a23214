#!/usr/bin/env bash
# Installs the npm dependencies from package-lock.json. `npm ci` first; npm 11 writes lock files
# that leave out optional native bindings of other platforms (e.g. unrs-resolver's) and its own
# `npm ci` then refuses them as "out of sync", so fall back to `npm install`, which honours the
# locked versions and adds nothing else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
npm ci --no-audit --no-fund --loglevel=error 2>/dev/null || {
  echo "npm ci refused the lock file; installing with npm install" >&2
  npm install --no-audit --no-fund --loglevel=error
  git checkout -- package-lock.json 2>/dev/null || true
}
