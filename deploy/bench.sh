#!/usr/bin/env bash
# `make bench`: raw baselines and accesshub's own figures in one run on this machine.
# Every benchmark prints its table and replaces its section of BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/dev-services.sh
cargo build --release --workspace --bins
BIN=target/release
run() {
  local bin=$1; shift
  if [ -x "$BIN/$bin" ]; then
    echo "=== $bin $*"
    "$BIN/$bin" "$@"
  else
    echo "=== $bin: not built (skipped)"
  fi
}
run baselines
run ingest-bench
run worker-bench
run dlq-bench
run sync-bench
echo
echo "Figures written to BENCHMARKS.md"
