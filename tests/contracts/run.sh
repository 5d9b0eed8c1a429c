#!/usr/bin/env bash
# Contract tests for proto-schemas/ (issue 24): the official AsyncAPI parser (npm
# @asyncapi/parser, pinned in package-lock.json, installed into tests/contracts/node_modules),
# check_schema on every JSON Schema and every example validated (python-jsonschema).
#
#   tests/contracts/run.sh [pytest args...]
#
# Virtualenv: <repo>/.venv-tests (gitignored), shared with tests/api-fuzz.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${ACCESSHUB_TESTS_VENV:-$REPO/.venv-tests}"
VENV_LOG_NAME=contract-tests
# shellcheck source=../lib/venv.sh
. "$REPO/tests/lib/venv.sh"

ensure_venv "$VENV" "$HERE/requirements.txt"
ensure_node
lock="$HERE/node_modules/.package-lock.json"
if [ ! -f "$lock" ] || ! cmp -s <(sha256sum < "$HERE/package-lock.json") "$HERE/node_modules/.lock.sha256" 2>/dev/null; then
    venv_log "installing @asyncapi/parser (npm ci)"
    (cd "$HERE" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    sha256sum < "$HERE/package-lock.json" > "$HERE/node_modules/.lock.sha256"
fi

cd "$HERE"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$@"
