#!/usr/bin/env bash
# Install Node-RED (npm, version 4: it runs on Node.js 18-20; 5 needs Node.js 22) into
# $WEIR_TOOLS/node-red, once: the relay benchmark's R6 case runs the threshold job as a
# Node-RED flow beside weir. Idempotent: quick when already installed.
set -euo pipefail
WEIR_TOOLS="${WEIR_TOOLS:-$HOME/.cache/weir-tools}"
if [[ ! -x "$WEIR_TOOLS/node-red/node_modules/.bin/node-red" ]]; then
    echo "installing node-red@4 into $WEIR_TOOLS/node-red"
    mkdir -p "$WEIR_TOOLS/node-red"
    (cd "$WEIR_TOOLS/node-red" && npm install --no-audit --no-fund --silent node-red@4 >/dev/null)
fi
