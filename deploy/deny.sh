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
  # A local clone (e.g. an offline mirror): point a copy of the config at it.
  cfg=$(mktemp)
  trap 'rm -f "$cfg"' EXIT
  sed -e "s|^db-urls = .*|db-urls = [\"file://${ACCESSHUB_ADVISORY_DB}\"]|" deny.toml > "$cfg"
  "$CARGO" deny --locked check --config "$cfg" advisories
elif timeout "${ACCESSHUB_ADVISORY_FETCH_TIMEOUT:-60}" "$CARGO" deny fetch db >/dev/null 2>&1; then
  "$CARGO" deny --locked check --disable-fetch advisories
else
  warn_skipped "the RustSec advisory database could not be fetched"
fi
