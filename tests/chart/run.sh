#!/usr/bin/env bash
# Chart tests for helm/accesshub: lint + render with the Helm v4 engine (helm-python-sdk, no helm
# binary, no cluster), Kubernetes schema validation (kubernetes-validate) and pytest assertions.
#
#   tests/chart/run.sh [pytest args...]
#
# Uses a virtualenv at <repo>/.venv-chart (gitignored), created on first run. Works on a fresh
# Debian machine with python3: installs python3-venv with apt-get when venv is unavailable.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${ACCESSHUB_CHART_VENV:-$REPO/.venv-chart}"
PYTHON="${PYTHON:-python3}"
REQ="$HERE/requirements.txt"

log() { printf 'chart-tests: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else log "need root to run: $*"; return 1
    fi
}

make_venv() {
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" >/dev/null 2>&1
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    log "$PYTHON not found; installing it with apt-get"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3 python3-venv >/dev/null
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating virtualenv $VENV"
    if ! make_venv; then
        # Debian splits venv/ensurepip into python3-venv (python3.X-venv).
        log "python3 -m venv is unavailable; installing python3-venv with apt-get"
        pyver="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null \
            || DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "python${pyver}-venv" >/dev/null
        make_venv || { log "could not create $VENV"; exit 1; }
    fi
fi

# Reinstall only when requirements.txt changed since the last successful install.
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing $(grep -cvE '^\s*(#|$)' "$REQ") packages from tests/chart/requirements.txt"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
    printf '%s\n' "$want" > "$stamp"
fi

cd "$HERE"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$@"
