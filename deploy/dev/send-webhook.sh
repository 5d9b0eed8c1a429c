#!/usr/bin/env bash
# Signs and posts a webhook to the local booking-ingest, as an upstream system would:
# HMAC-SHA256 over "<timestamp>.<body>" with the tenant source's secret.
#   deploy/dev/send-webhook.sh SOURCE TENANT FILE
set -euo pipefail
source="$1"; tenant="$2"; file="$3"
secret="${ACCESSHUB_DEMO_WEBHOOK_SECRET:-dev-webhook-secret-at-least-32-bytes}"
ts="$(date +%s)"
sig="$( (printf '%s.' "$ts"; cat "$file") | openssl dgst -sha256 -hmac "$secret" -hex | awk '{print $NF}')"
curl -sS -X POST "http://127.0.0.1:8080/webhooks/$source/$tenant" \
  -H 'Content-Type: application/json' \
  -H "X-Accesshub-Timestamp: $ts" \
  -H "X-Accesshub-Signature: sha256=$sig" \
  --data-binary "@$file"
echo
