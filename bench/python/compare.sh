#!/usr/bin/env bash
# Runs the Rust workloads bench and the same workloads on the Python Aqueduct 1.15.0,
# in one go, and prints a side-by-side table. Not part of CI (it takes ~10 minutes and
# needs PyPI for the first setup). Figures land in bench/python/results/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/results"
mkdir -p "$out"
"$here/setup.sh"
echo "machine: $(nproc) cores, $(uname -sr), $(date -u +%Y-%m-%d)" | tee "$out/machine.txt"
(cd "$root" && cargo bench -p aqueduct --bench workloads -- "$@") | tee "$out/rust.txt"
"$here/.venv/bin/python" "$here/workloads.py" "$@" | tee "$out/python.txt"
python3 "$here/compare.py" "$out/rust.txt" "$out/python.txt" | tee "$out/table.md"
