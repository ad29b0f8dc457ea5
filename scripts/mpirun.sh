#!/usr/bin/env bash
# Runs `smol` under Open MPI on this machine: scripts/mpirun.sh NP smol-arguments...
# Adds --allow-run-as-root when run as root, and --oversubscribe so NP may exceed the cores.
set -euo pipefail
cd "$(dirname "$0")/.."
np=$1; shift
extra=()
if [ "$(id -u)" -eq 0 ]; then extra+=(--allow-run-as-root); fi
exec mpirun "${extra[@]}" --oversubscribe -np "$np" .build/release/smol "$@"
