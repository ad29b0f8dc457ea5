#!/usr/bin/env bash
# The whole test suite: Swift unit tests (XCTest), then the end-to-end tests (pytest) that drive
# the release `smol` binary and compare it with independent NumPy references.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
test -x .build/release/smol
swift test 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]|^Test Case .* (started|passed)'
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "swift test failed" >&2; exit "$status"; }
python3 -m pytest -q tests
