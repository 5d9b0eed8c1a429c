#!/usr/bin/env bash
# `make dev`: the whole system locally — vendor simulators, booking-ingest (webhooks), the admin
# API service, the four workers and the reconciler — wired to a demo tenant. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=.dev-run
mkdir -p "$RUN"
cargo build --workspace --bins
BIN=target/debug

# Local secrets, fixed like the admin token and the webhook secret below (dev mode only, never
# used outside this machine). The encryption key is fixed rather than random per checkout: the
# demo's connections are sealed with it in the shared database, and a second checkout (or a
# deleted .dev-run) with a fresh random key could no longer open them ('secret could not be
# decrypted', 503).
if [ ! -f "$RUN/env" ]; then
  key="k1:$(printf 'accesshub-make-dev-only-key-32by' | base64 | tr -d '\n')"
  cat > "$RUN/env" <<ENV
export ACCESSHUB_ENCRYPTION_KEY='$key'
export ACCESSHUB_ADMIN_TOKEN='dev-admin-token'
export ACCESSHUB_DEMO_WEBHOOK_SECRET='dev-webhook-secret-at-least-32-bytes'
ENV
fi
# The Clock PMS+ simulator's API user and key (vendor_sim::clock::DEMO_USER / DEMO_API_KEY).
export ACCESSHUB_DEMO_CLOCK_API='accesshub_api:clock-demo-api-key'
# shellcheck disable=SC1091
source "$RUN/env"
# Dev mode: the services' local defaults apply (production, the default, requires
# DATABASE_URL, the encryption key and the admin token and stops naming what is missing).
export ACCESSHUB_MODE=dev
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export ACCESSHUB_LOG_FORMAT="${ACCESSHUB_LOG_FORMAT:-pretty}"
export ACCESSHUB_STREAM_REPLICAS=1
# The vendor simulators listen on loopback over plain http; production leaves this empty
# (strict: https to public addresses only). See docs/security.md "Egress".
export ACCESSHUB_EGRESS_ALLOW="${ACCESSHUB_EGRESS_ALLOW:-http://127.0.0.1:*,http://localhost:*}"
export RUST_LOG="${RUST_LOG:-info}"
export ACCESSHUB_API_URL="http://127.0.0.1:8086/admin/v1"
export ACCESSHUB_TOKEN="$ACCESSHUB_ADMIN_TOKEN"

pids=()
cleanup() {
  echo; echo "stopping accesshub…"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# NATS with auth on, as in production: one identity per service with the permissions of
# deploy/nats/permissions.yaml (docs/security.md "NATS identities"), plus demo-upstream, an
# upstream bound to tenant demo (`nats req --user demo-upstream ... ingest.native.demo`). Its
# own server on NATS_DEV_PORT: the machine's open server on 4222 stays for the tests.
NATS_DEV_PORT="${NATS_DEV_PORT:-4223}"
touch "$RUN/nats-passwords" && chmod 600 "$RUN/nats-passwords"
# A password for every identity without one yet (identities added since the last run too).
for u in $("$BIN/accesshub-nats-config" users) demo-upstream; do
  grep -q "^$u=" "$RUN/nats-passwords" ||
    echo "$u=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')" >> "$RUN/nats-passwords"
done
nats_pw() { sed -n "s/^$1=//p" "$RUN/nats-passwords"; }
"$BIN/accesshub-nats-config" server --listen "127.0.0.1:$NATS_DEV_PORT" \
  --store-dir "$PWD/$RUN/nats-js" --passwords "$RUN/nats-passwords" \
  --upstream demo-upstream:demo >"$RUN/nats.conf"
nats_bin="$(command -v nats-server || echo /usr/sbin/nats-server)"
"$nats_bin" -c "$RUN/nats.conf" >"$RUN/nats-server.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_DEV_PORT") 2>/dev/null && break; sleep 0.2; done
export NATS_URL="nats://127.0.0.1:$NATS_DEV_PORT"
# accessctl dlq / status go through the admin API; these are for their --direct break-glass.
export ACCESSCTL_NATS_USER=accessctl-dlq
ACCESSCTL_NATS_PASSWORD="$(nats_pw accessctl-dlq)"
export ACCESSCTL_NATS_PASSWORD
echo "  nats-server  $NATS_URL   (auth on; config $RUN/nats.conf, passwords $RUN/nats-passwords)"

start() {
  local name=$1 port=$2; shift 2
  if [ ! -x "$BIN/$name" ]; then echo "($name not built yet — skipped)"; return; fi
  # Each service connects as the NATS user of its own name.
  ACCESSHUB_HTTP_ADDR="127.0.0.1:$port" OTEL_SERVICE_NAME="$name" \
    NATS_USER="$name" NATS_PASSWORD="$(nats_pw "$name")" \
    "$BIN/$name" "$@" >"$RUN/$name.log" 2>&1 &
  pids+=("$!")
  echo "  $name  http://127.0.0.1:$port   (log: $RUN/$name.log)"
}

wait_ready() {
  local name=$1 url=$2
  for _ in $(seq 1 100); do
    if curl -fsS "$url" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "$name did not become ready: see $RUN/$name.log"; return 1
}

# Services never migrate (they refuse a schema older than they need): accessctl does, as the
# Helm chart's pre-install/pre-upgrade Job does in a cluster.
"$BIN/accessctl" migrate
# Likewise the streams: created and changed only by `accessctl streams apply` as the NATS
# identity accesshub-streams (the services' identities may only read stream info).
NATS_USER=accesshub-streams NATS_PASSWORD="$(nats_pw accesshub-streams)" \
  "$BIN/accessctl" streams apply >/dev/null
echo "starting:"
start vendor-sim 18080
wait_ready vendor-sim http://127.0.0.1:18080/healthz
echo "  clock-sim   http://127.0.0.1:18085/pms_api/176987/77   (Clock PMS+ API of the demo's Utrecht hotel, account 77; HTTP Digest)"
start booking-ingest 8080
wait_ready booking-ingest http://127.0.0.1:8080/readyz
start accesshub-admin 8086
wait_ready accesshub-admin http://127.0.0.1:8086/readyz
start cloudpass-worker 8081
start dormakaba-worker 8082
start ipassan-worker 8083
start tapkey-worker 8084
start reconciler 8085

# The demo tenant: its connections to the simulators, then a webhook secret and site defaults
# for every upstream source (through the admin API service).
echo "configuring the demo tenant:"
"$BIN/accessctl" connections apply -f deploy/dev/demo.yaml
for source in bex clock nexudus connecx native; do
  "$BIN/accessctl" tenants set-secret demo "$source" --from-env ACCESSHUB_DEMO_WEBHOOK_SECRET >/dev/null
  curl -fsS -X PUT "$ACCESSHUB_API_URL/tenants/demo/sources/$source/site-defaults" \
    -H "Authorization: Bearer $ACCESSHUB_TOKEN" -H 'Content-Type: application/json' \
    --data-binary @deploy/dev/site-defaults.json >/dev/null
done
echo "  tenant demo: webhook secret \$ACCESSHUB_DEMO_WEBHOOK_SECRET and site defaults for bex clock nexudus connecx native"
# Clock PMS+ API credentials: "Sync" on the dormakaba connection "utrecht" (account 77) reads
# the Clock simulator's bookings first (docs/upstreams.md "Pulls").
"$BIN/accessctl" tenants set-api demo clock --base-url http://127.0.0.1:18085/pms_api/176987/77 \
  --from-env ACCESSHUB_DEMO_CLOCK_API >/dev/null
echo "  tenant demo: Clock PMS+ API credentials (account 77) for the dormakaba connection utrecht's Sync"
# The simulators start empty while Postgres keeps the desired state of earlier sessions: a
# full sync per connection (admin API, reconciler) puts those bookings back at the vendors.
for vendor in cloudpass tapkey ipassan; do
  curl -fsS -X POST "$ACCESSHUB_API_URL/syncs" \
    -H "Authorization: Bearer $ACCESSHUB_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"tenant\":\"demo\",\"vendor\":\"$vendor\",\"scope\":\"full\"}" >/dev/null
done
curl -fsS -X POST "$ACCESSHUB_API_URL/syncs" \
  -H "Authorization: Bearer $ACCESSHUB_TOKEN" -H 'Content-Type: application/json' \
  -d '{"tenant":"demo","vendor":"dormakaba","connection":"utrecht","scope":"upcoming","days":5}' >/dev/null
echo "  full syncs queued for demo/cloudpass, tapkey, ipassan (restores earlier sessions' bookings)"
echo "  sync queued for demo/dormakaba/utrecht: pulls the Clock simulator's bookings into Ambiance"

cat <<MSG

accesshub is running with the vendor simulators (control API http://127.0.0.1:18080).
  send a demo BEX reservation:   deploy/dev/send-webhook.sh bex demo deploy/dev/bex-reservation.json
  see what CloudPass holds:      curl -s http://127.0.0.1:18080/state/cloudpass | jq
  more demo webhooks:            deploy/dev/send-webhook.sh clock|nexudus|connecx demo deploy/dev/<file>.json
  Clock PMS+ pull (no webhook):  $BIN/accessctl sync run demo dormakaba utrecht --wait · curl -s http://127.0.0.1:18080/state/dormakaba | jq
  admin API:                     $ACCESSHUB_API_URL (token \$ACCESSHUB_ADMIN_TOKEN)
  operator console:              http://127.0.0.1:8086/console (log in with token $ACCESSHUB_ADMIN_TOKEN)
  operate:                       $BIN/accessctl status · $BIN/accessctl dlq list
Ctrl-C stops everything.
MSG
wait
