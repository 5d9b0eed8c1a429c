#!/usr/bin/env bash
# Proves the cluster chaos test can fail (issue 25): each patch here is a known-bad change
# (ack-transient-failures.patch: a transient vendor failure is acked instead of NAKed, so the
# event is lost; ack-before-record.patch: the event is acked before the vendor call and its
# binding record are durable). For each, a scratch worktree of HEAD gets the patch, the binaries are
# built there (own target dir), and the short cluster chaos (seed 1) must FAIL.
# `make known-bad`; several minutes per patch (a full debug build).
set -euo pipefail
cd "$(dirname "$0")/../../.."
root=$PWD
status=0
for patch in tests/e2e/known-bad/*.patch; do
  wt=$(mktemp -d /tmp/accesshub-known-bad.XXXXXX)
  git worktree add -q --detach "$wt" HEAD
  (
    cd "$wt"
    git apply "$root/$patch"
    export CARGO_TARGET_DIR="${KNOWN_BAD_TARGET_DIR:-$wt/target}"
    cargo build -q --workspace --bins
    if cargo test -q -p accesshub-e2e --test cluster cluster_chaos_seeded >"$wt/chaos.log" 2>&1; then
      echo "KNOWN-BAD NOT CAUGHT: $patch (the cluster chaos test passed with it; log: $wt/chaos.log)"
      exit 1
    fi
    echo "caught: $patch ($(grep -m1 -E 'not as wanted|panicked' "$wt/chaos.log" | cut -c1-160))"
  ) || status=1
  git worktree remove --force "$wt" 2>/dev/null || true
done
exit $status
