#!/usr/bin/env bash
# The whole test suite: Swift unit tests (XCTest), then the end-to-end tests (pytest) that drive
# the release `smol` binary and compare it with independent NumPy references.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's OpenBLAS 0.3.21 can compute wrong results with its AVX-512 kernels on AMD Zen CPUs, and
# they break the row-invariance evaluation relies on; this project's machines pin the AVX2 kernels
# (OPENBLAS_CORETYPE=Haswell). Where a machine's environment leaves the variable unset on such a
# CPU, the suite pins it the same way (tests/test_parity.py still runs OpenBLAS's own pick too).
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -q avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=Haswell
  echo "OPENBLAS_CORETYPE was unset on an AVX-512 CPU: the tests run with OPENBLAS_CORETYPE=Haswell"
fi
swift build -c release 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
test -x .build/release/smol
swift test 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]|^Test Case .* (started|passed)'
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "swift test failed" >&2; exit "$status"; }
python3 -m pytest -q --durations=25 tests
