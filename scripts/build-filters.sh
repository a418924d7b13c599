#!/usr/bin/env bash
# Build every example module in filters/ for wasm32-wasip2:
#   - the Rust ones (one cargo workspace, opt-level 3 release profile);
#   - the Python twin of the threshold filter (componentize-py from PyPI).
# Idempotent and quick when nothing changed. Output: filters/target/wasm32-wasip2/release/*.wasm
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-wasip2$'; then
    rustup target add wasm32-wasip2
fi
(cd filters && cargo build --release --target wasm32-wasip2 --quiet)

out=filters/target/wasm32-wasip2/release
if [[ "${WEIR_SKIP_PYTHON:-0}" != 1 ]]; then
    if ! command -v componentize-py >/dev/null 2>&1; then
        python3 -m pip install --quiet 'componentize-py==0.25.1'
    fi
    # Rebuild only when the source or the contract changed.
    if [[ ! -f "$out/python_threshold.wasm" || filters/python-threshold/app.py -nt "$out/python_threshold.wasm" || sdk-guest/wit/weir.wit -nt "$out/python_threshold.wasm" ]]; then
        (cd filters/python-threshold && componentize-py -d ../../sdk-guest/wit -w filter-module componentize app -o "../../$out/python_threshold.wasm" >/dev/null)
    fi
fi
ls "$out"/*.wasm >/dev/null
