#!/usr/bin/env bash
# Makes sure the build prerequisites are installed and NATS (with JetStream) and PostgreSQL
# answer on 127.0.0.1:4222 / :5432, so `make dev` and `make test` work on a fresh Debian
# machine. Idempotent. What it may change on the machine (printed when it runs, and in
# README.md "On a fresh Debian machine"):
#   - installs the missing ones of $PREREQUISITES and nats-server / postgresql (apt-get);
#   - starts nats-server (JetStream, store /var/lib/nats-server) on 127.0.0.1:4222;
#   - starts the newest PostgreSQL cluster;
#   - if postgres cannot log in over TCP: prepends two `trust` lines for 127.0.0.1 and ::1
#     (marked `# accesshub-dev`) to that cluster's pg_hba.conf and reloads it;
#   - creates the database `test`.
set -euo pipefail

# The one-line prerequisites (README.md): a C toolchain for ring/mimalloc, pkg-config,
# binutils (objcopy, in build-essential), jq and curl for the README's and make dev's examples,
# python3-venv for the chart tests' virtualenv, the PostgreSQL client for psql.
PREREQUISITES="build-essential pkg-config jq curl ca-certificates git python3 python3-venv postgresql-client"

NATS_PORT="${NATS_PORT:-4222}"
PG_PORT="${PG_PORT:-5432}"
PG_MAX_CONNECTIONS="${PG_MAX_CONNECTIONS:-300}"
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

log() { echo "[dev-services] $*" >&2; }

CHANGES=()
changed() { CHANGES+=("$*"); log "changing the machine: $*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do
    if port_open "$port"; then return 0; fi
    sleep 0.5
  done
  log "$name did not come up on port $port"; return 1
}

apt_install() {
  changed "apt-get install $*"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq "$@" >/dev/null
}

ensure_prerequisites() {
  local missing=()
  for p in $PREREQUISITES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; else log "prerequisites installed"; fi
}

ensure_nats() {
  if port_open "$NATS_PORT"; then log "NATS up on :$NATS_PORT"; return; fi
  local bin
  bin="$(command -v nats-server || true)"
  [ -z "$bin" ] && [ -x /usr/sbin/nats-server ] && bin=/usr/sbin/nats-server
  if [ -z "$bin" ]; then apt_install nats-server; bin="$(command -v nats-server || echo /usr/sbin/nats-server)"; fi
  local sd=/var/lib/nats-server
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then sd="${TMPDIR:-/tmp}/accesshub-nats"; fi
  $SUDO mkdir -p "$sd"
  changed "starting nats-server on 127.0.0.1:$NATS_PORT (JetStream, store $sd)"
  if command -v start-stop-daemon >/dev/null; then
    $SUDO start-stop-daemon --start --oknodo --background --exec "$bin" -- \
      -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$sd"
  else
    nohup "$bin" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$sd" >/tmp/accesshub-nats.log 2>&1 &
  fi
  wait_port "$NATS_PORT" NATS
  log "NATS up on :$NATS_PORT"
}

ensure_postgres() {
  if port_open "$PG_PORT"; then log "PostgreSQL up on :$PG_PORT"; else
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql; fi
    local ver
    ver="$(ls /etc/postgresql | sort -V | tail -1)"
    changed "starting PostgreSQL $ver (cluster main)"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    wait_port "$PG_PORT" PostgreSQL
  fi
  # Trust auth on loopback and a `test` database, as the project's machines have.
  local psql=(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAq)
  if ! "${psql[@]}" -c 'select 1' >/dev/null 2>&1; then
    local hba
    hba="$(ls /etc/postgresql/*/main/pg_hba.conf 2>/dev/null | tail -1 || true)"
    if [ -n "$hba" ] && ! grep -q "accesshub-dev" "$hba"; then
      changed "prepending trust auth for 127.0.0.1/32 and ::1/128 (# accesshub-dev) to $hba, reloading PostgreSQL"
      $SUDO sed -i '1i host all all 127.0.0.1/32 trust # accesshub-dev\nhost all all ::1/128 trust # accesshub-dev' "$hba"
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main reload || true
      sleep 1
    fi
  fi
  if ! "${psql[@]}" -c "select 1 from pg_database where datname='test'" | grep -q 1; then
    changed "creating database test"
    "${psql[@]}" -c 'create database test' || true
  fi
  # The test suite runs 8 tests at once, each end-to-end test with its own booking-ingest,
  # workers and reconciler (a pool each): Debian's default of 100 connections is too few
  # ("sorry, too many clients already"). Raised once, with a restart, on a cluster we manage.
  local maxc
  maxc="$("${psql[@]}" -c 'show max_connections' 2>/dev/null || echo 0)"
  if [ "${maxc:-0}" -lt "$PG_MAX_CONNECTIONS" ]; then
    local ver
    ver="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
    if [ -n "$ver" ]; then
      changed "raising PostgreSQL max_connections from $maxc to $PG_MAX_CONNECTIONS (ALTER SYSTEM), restarting cluster $ver/main"
      "${psql[@]}" -c "alter system set max_connections = $PG_MAX_CONNECTIONS" || true
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main restart || true
      wait_port "$PG_PORT" PostgreSQL
    else
      log "WARNING: PostgreSQL max_connections is $maxc (< $PG_MAX_CONNECTIONS) and not a cluster this script manages: parallel tests may see 'too many clients'"
    fi
  fi
  log "PostgreSQL ready (database test)"
}

# Headless Chromium + chromedriver for the console's browser tests (tests/e2e/tests/console.rs).
# Not fatal: without them those tests skip with a loud message.
ensure_browser() {
  if command -v chromedriver >/dev/null && command -v chromium >/dev/null; then
    log "chromium + chromedriver present"; return
  fi
  if apt_install chromium chromium-driver fonts-dejavu-core; then
    log "chromium + chromedriver installed"
  else
    log "WARNING: could not install chromium/chromium-driver: the console browser tests will be SKIPPED"
  fi
}

if command -v dpkg-query >/dev/null; then ensure_prerequisites; else log "not Debian: install $PREREQUISITES yourself"; fi
ensure_nats
ensure_postgres
ensure_browser
if [ "${#CHANGES[@]}" -eq 0 ]; then
  log "nothing changed on this machine"
else
  log "changed on this machine:"
  for c in "${CHANGES[@]}"; do log "  - $c"; done
fi
