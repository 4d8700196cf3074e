#!/usr/bin/env bash
# The whole test suite: unit and integration tests (kube-rs and every bundled kubectl against a
# real `lockbox up`), then the seed's acceptance scenario, gated on the checks that must pass.
set -euo pipefail
cd "$(dirname "$0")/.."
# No test may leave a pod's tmpfs mounted (Secret values, in memory) once its server is gone:
# servers are stopped gracefully, and an agent started after a crash cleans up first.
check_mounts() {
  local left
  left=$(awk -v tmp="${TMPDIR:-/tmp}/" '$3 == "tmpfs" && index($2, tmp) == 1 && $2 ~ /\/agent\/pods\// {print $2}' /proc/self/mounts)
  if [ -n "$left" ]; then
    echo "pod volumes left mounted after $1:"
    echo "$left"
    exit 1
  fi
}
scripts/peers.sh
cargo build --locked --bin lockbox
bin="${CARGO_TARGET_DIR:-target}/debug/lockbox"
cargo test --locked --workspace
check_mounts "cargo test"
# The benchmark harness at smoke size, so that it cannot rot (nothing is asserted about speed).
echo "== lockbox bench --smoke"
bench_out=$(mktemp -d)
LOCKBOX_BENCH_BAO="$PWD/.peers/venv/bin/bao" "$bin" bench --smoke --out "$bench_out" >"$bench_out/bench.log" 2>&1 || { cat "$bench_out/bench.log"; exit 1; }
for f in results.json results.md latency.png; do
  [ -s "$bench_out/$f" ] || { cat "$bench_out/bench.log"; echo "bench --smoke wrote no $f"; exit 1; }
done
rm -rf "$bench_out"
scripts/seed-gate.sh "$bin"
# The seed's exercise under every kubectl bundled next to the one on PATH (1.27 to 1.33 here).
dir=$(dirname "$(readlink -f "$(command -v kubectl)")")
for k in "$dir"/kubectl.1.*; do
  [ -x "$k" ] || continue
  echo "== seed scenario with $(basename "$k")"
  KUBECTL=$k scripts/seed-gate.sh "$bin"
done
check_mounts "the seed scenarios"
# README's OpenBao-to-pod walkthrough, exactly as documented.
echo "== examples/openbao-to-pod.sh"
PATH="$PWD/.peers/venv/bin:$PATH" examples/openbao-to-pod.sh "$bin"
