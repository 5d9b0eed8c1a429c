#!/usr/bin/env bash
# `make bench`: raw baselines and accesshub's own figures in one run on this machine.
# Every benchmark prints its table, replaces its section of BENCHMARKS.md and writes its key
# figures to target/bench/<name>.json; bench-summary then prints baselines, figures, targets
# and ratios in one table and writes it as the "## Summary" section at the top of BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/dev-services.sh
cargo build --release --workspace --bins
BIN=target/release
export BENCH_FIGURES_DIR="$PWD/target/bench"
# Figures of earlier runs must not pass for this one's.
mkdir -p "$BENCH_FIGURES_DIR"
rm -f "$BENCH_FIGURES_DIR"/*.json
failed=()
# Each benchmark starts on a quiet machine: the one before it leaves Postgres with dirty
# buffers to checkpoint and tables for autovacuum (a 50k-webhook burst does), which on 2
# cores lands in the next benchmark's latency tail. Checkpoint now and wait (at most 60 s)
# until no autovacuum worker is busy. Flush the page cache's dirty pages first: the release
# build just wrote its artifacts, and their writeback shares the disk with Postgres's WAL
# fsyncs (a p99 of 14.7 ms at 2,000/s right after a build against 4.4-4.8 ms without one).
settle() {
  sync
  psql -h 127.0.0.1 -U postgres -d test -qc "CHECKPOINT" >/dev/null 2>&1 || true
  for _ in $(seq 60); do
    busy=$(psql -h 127.0.0.1 -U postgres -d test -tAc \
      "select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'" 2>/dev/null || echo 0)
    [ "${busy:-0}" = "0" ] && break
    sleep 1
  done
  sleep 2
}
run() {
  local bin=$1; shift
  if [ -x "$BIN/$bin" ]; then
    settle
    echo "=== $bin $*"
    # A failing benchmark does not stop the others; the summary shows it as not run.
    "$BIN/$bin" "$@" || failed+=("$bin")
  else
    echo "=== $bin: not built (skipped)"
    failed+=("$bin")
  fi
}
run baselines
run ingest-bench
run worker-bench
run dlq-bench
run sync-bench
run keyreq-bench 50
run pull-bench
# Production-like (issue 25): the whole pipeline, each worker at 0 and 100 ms vendor latency
# on R1 and on a 3-node R3 cluster, and memory per service plus the image size (the
# `accesshub` binary built above, not rebuilt).
run pipeline-bench
run workers-bench
run rss-bench
echo
echo "=== bench-summary"
"$BIN/bench-summary"
echo "Figures written to BENCHMARKS.md"
if [ ${#failed[@]} -gt 0 ]; then
  echo "benchmarks that failed or were not built: ${failed[*]}" >&2
  exit 1
fi
