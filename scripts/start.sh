#!/usr/bin/env bash
# `npm start`: install dependencies and build when needed, then run the driver in the foreground
# (embedded store, socket /run/docker/plugins/vxnet.sock). Extra arguments go to `vxnet run`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/npm-deps.sh   # npm ci, only when the lock changed since the last install
if [ ! -f dist/src/main.js ] || [ -n "$(find src -newer dist/src/main.js -name '*.ts' -print -quit)" ]; then
  npx tsc -p tsconfig.json
fi
# node's flags for the driver, unless NODE_OPTIONS gives others (src/node-options.ts).
export NODE_OPTIONS="${NODE_OPTIONS:---max-semi-space-size=4}"
exec node dist/src/main.js run "$@"
