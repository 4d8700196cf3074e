#!/usr/bin/env bash
# The whole test suite: unit and integration tests (kube-rs and every bundled kubectl against a
# real `lockbox up`), then the seed's acceptance scenario, gated on the checks that must pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/peers.sh
cargo build --locked --bin lockbox
bin="${CARGO_TARGET_DIR:-target}/debug/lockbox"
cargo test --locked --workspace
scripts/seed-gate.sh "$bin"
# The seed's exercise under every kubectl bundled next to the one on PATH (1.27 to 1.33 here).
dir=$(dirname "$(readlink -f "$(command -v kubectl)")")
for k in "$dir"/kubectl.1.*; do
  [ -x "$k" ] || continue
  echo "== seed scenario with $(basename "$k")"
  KUBECTL=$k scripts/seed-gate.sh "$bin"
done
# README's OpenBao-to-pod walkthrough, exactly as documented.
echo "== examples/openbao-to-pod.sh"
PATH="$PWD/.peers/venv/bin:$PATH" examples/openbao-to-pod.sh "$bin"
