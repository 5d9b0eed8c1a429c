#!/usr/bin/env bash
# Creates the Secret accesshub-nats-users — one random password per accesshub NATS identity
# (key = user, from deploy/nats/permissions.yaml) — in the NATS namespace and in accesshub's,
# with the same passwords, for deploy/nats/values-nats.yaml and
# `nats.auth.existingSecret=accesshub-nats-users` in helm/accesshub. Existing Secrets are kept
# (delete them first to rotate every password at once; see docs/deploy.md).
#
#   deploy/nats/create-secrets.sh <nats-namespace> <accesshub-namespace>
set -euo pipefail
NATS_NS=${1:?nats namespace}
AH_NS=${2:?accesshub namespace}
HERE="$(cd "$(dirname "$0")" && pwd)"
SECRET=accesshub-nats-users

# The users: the keys under `identities:` in permissions.yaml.
mapfile -t users < <(awk '/^identities:/{on=1; next} /^[^ #]/{on=0} on && /^  [a-z0-9-]+:$/{sub(":",""); print $1}' "$HERE/permissions.yaml")
[ "${#users[@]}" -gt 0 ] || { echo "no identities found in $HERE/permissions.yaml" >&2; exit 1; }

args=()
for u in "${users[@]}"; do
  args+=("--from-literal=$u=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n' | head -c 32)")
done
for ns in "$NATS_NS" "$AH_NS"; do
  if kubectl -n "$ns" get secret "$SECRET" >/dev/null 2>&1; then
    echo "$ns/$SECRET exists: kept" >&2
  else
    kubectl -n "$ns" create secret generic "$SECRET" "${args[@]}"
  fi
done
