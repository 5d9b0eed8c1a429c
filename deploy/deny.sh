#!/usr/bin/env bash
# Dependency policy (deny.toml) with cargo-deny: licenses, bans (duplicate crypto crates,
# deprecated crates) and sources always run and fail the build. Advisories need the RustSec
# database, which lives on GitHub: they run when it can be fetched (or when
# ACCESSHUB_ADVISORY_DB names a local clone of it), otherwise a loud warning says they did not.
# Used by `make lint`, `make deny` and CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}

if ! "$CARGO" deny --version >/dev/null 2>&1; then
  echo "cargo-deny is not installed: cargo install --locked cargo-deny"
  "$CARGO" install --locked cargo-deny
fi

"$CARGO" deny --locked check licenses bans sources

warn_skipped() {
  echo
  echo "######################################################################"
  echo "## WARNING: cargo deny check advisories was SKIPPED: $1"
  echo "## Known vulnerabilities in dependencies were NOT checked."
  echo "######################################################################"
  echo
}

if [ -n "${ACCESSHUB_ADVISORY_DB:-}" ]; then
  # A local clone (an offline mirror). cargo-deny takes no file:// URL: it reads the database
  # of the default URL from $CARGO_HOME/advisory-dbs/advisory-db-<hash of that URL> (this
  # name is cargo-deny 0.20's), and --offline keeps it from fetching.
  dbdir="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691"
  rm -rf "$dbdir"
  git clone -q "$ACCESSHUB_ADVISORY_DB" "$dbdir"
  "$CARGO" deny --locked --offline check advisories
elif timeout "${ACCESSHUB_ADVISORY_FETCH_TIMEOUT:-60}" "$CARGO" deny fetch db >/dev/null 2>&1; then
  "$CARGO" deny --locked check advisories
else
  warn_skipped "the RustSec advisory database could not be fetched"
fi
