# Sourced by tests/*/run.sh: `ensure_venv VENV REQUIREMENTS` creates a Python virtualenv (installing
# python3 / python3-venv with apt-get on a fresh Debian machine) and installs REQUIREMENTS into
# it, again only when that file changed since the last successful install.

venv_log() { printf '%s: %s\n' "${VENV_LOG_NAME:-tests}" "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else venv_log "need root to run: $*"; return 1
    fi
}

apt_install() {
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_venv() {
    local venv="$1" req="$2" python="${PYTHON:-python3}"
    command -v "$python" >/dev/null 2>&1 || { venv_log "installing python3"; apt_install python3 python3-venv; }
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        venv_log "creating virtualenv $venv"
        rm -rf "$venv"
        if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
            local pyver
            pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
            venv_log "python3 -m venv is unavailable; installing python3-venv with apt-get"
            apt_install python3-venv || apt_install "python${pyver}-venv"
            rm -rf "$venv"
            "$python" -m venv "$venv" || { venv_log "could not create $venv"; return 1; }
        fi
    fi
    local stamp="$venv/.requirements.sha256" want
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        venv_log "installing $(grep -cvE '^\s*(#|$)' "$req") packages from ${req#"$REPO"/}"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
        printf '%s\n' "$want" > "$stamp"
    fi
}

# Node 20+ and npm (Debian's nodejs and npm when missing or too old).
ensure_node() {
    local major
    major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
    if [ "$major" -lt 18 ] || ! command -v npm >/dev/null 2>&1; then
        venv_log "installing Debian's nodejs and npm"
        apt_install nodejs npm
    fi
}
