#!/usr/bin/env bash
# The container image's size without a container engine (issue 24: target < 100 MB), measured
# from what deploy/Dockerfile puts in its layers:
#   1. builds the binary the builder stage builds (release, --locked, accesshub-image/accesshub),
#      at the lowest CPU priority;
#   2. splits and strips it exactly as the builder stage does (objcopy --only-keep-debug, then
#      --strip-all --add-gnu-debuglink) and makes the same links: that directory is the image's
#      own layer (COPY --from=builder /out/bin/ /usr/local/bin/);
#   3. adds the base layer, gcr.io/distroless/cc-debian12: the installed size of the Debian
#      packages it is assembled from (base-files, netbase, tzdata, ca-certificates, libc6,
#      libssl3, libgcc-s1, libgomp1, libstdc++6), an upper bound (distroless drops their docs);
#   4. prints the figures (and a Markdown table with --markdown) and fails above the target.
#
#   deploy/image-size.sh [--markdown]          CARGO_TARGET_DIR is honoured.
#
# IMAGE_SIZE_SKIP_BUILD=1 measures the binary already in the target directory (rss-bench in
# `make bench`, right after its release build of the workspace).
# IMAGE_SIZE_PROFILE=dev measures the debug build instead (no release build: minutes instead of
# the better part of an hour on a busy 2-core machine). Unoptimised code is larger than the
# release build's, so that figure is an upper bound of the image's size.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_MB=100
BASE_PACKAGES="base-files netbase tzdata ca-certificates libc6 libssl3 libgcc-s1 libgomp1 libstdc++6"
PROGRAMS="booking-ingest accesshub-admin cloudpass-worker dormakaba-worker ipassan-worker tapkey-worker reconciler accessctl"
target_dir="${CARGO_TARGET_DIR:-target}"

log() { echo "[image-size] $*" >&2; }

profile="${IMAGE_SIZE_PROFILE:-release}"
case "$profile" in
  release) flags=(--release); out_dir=release ;;
  dev) flags=(); out_dir=debug ;;
  *) log "IMAGE_SIZE_PROFILE must be release or dev"; exit 2 ;;
esac
if [ "${IMAGE_SIZE_SKIP_BUILD:-0}" = 1 ]; then
  # `make bench` (rss-bench) measures the binary its workspace build just made instead of
  # building it again for the image alone (the better part of an hour on a busy machine).
  log "IMAGE_SIZE_SKIP_BUILD=1: measuring $target_dir/$out_dir/accesshub as built"
  [ -x "$target_dir/$out_dir/accesshub" ] || { log "$target_dir/$out_dir/accesshub is not built"; exit 1; }
else
  log "building the image's binary ($profile, nice 19): cargo build ${flags[*]} --locked -p accesshub-image --bin accesshub"
  nice -n 19 cargo build "${flags[@]}" --locked -p accesshub-image --bin accesshub >&2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/debug"
built="$target_dir/$out_dir/accesshub"
objcopy --only-keep-debug "$built" "$work/debug/accesshub.debug"
objcopy --strip-all --add-gnu-debuglink="$work/debug/accesshub.debug" "$built" "$work/bin/accesshub"
for p in $PROGRAMS; do ln -s accesshub "$work/bin/$p"; done

bytes() { stat -c %s "$1"; }
unstripped=$(bytes "$built")
binary=$(bytes "$work/bin/accesshub")
debug=$(bytes "$work/debug/accesshub.debug")
layer=$(du -sb "$work/bin" | cut -f1)

# Installed-Size (KiB) of each base package, as this machine's apt knows it; t64 renames
# (Debian 13) are tried when the bookworm name is absent.
base_kib=0
base_list=""
for p in $BASE_PACKAGES; do
  kib=""
  for name in "$p" "${p}t64"; do
    kib="$(apt-cache show --no-all-versions "$name" 2>/dev/null | sed -n 's/^Installed-Size: //p' | head -1)"
    if [ -n "$kib" ]; then base_list+="$name=${kib}KiB "; break; fi
  done
  if [ -z "$kib" ]; then log "apt-cache knows no $p (run apt-get update)"; exit 1; fi
  base_kib=$((base_kib + kib))
done
base=$((base_kib * 1024))
total=$((base + layer))

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1000000 }'; }
log "base packages: $base_list"
cat <<OUT
profile:                              $profile$([ "$profile" = dev ] && echo " (upper bound: the image ships the release build)")
binary as built (line tables):        $(mb "$unstripped") MB
binary in the image (stripped):       $(mb "$binary") MB
accesshub.debug (separate artefact):  $(mb "$debug") MB
image layer /usr/local/bin:           $(mb "$layer") MB (1 binary + $(echo "$PROGRAMS" | wc -w) links)
base layer (distroless cc, packages): $(mb "$base") MB (upper bound)
image total:                          $(mb "$total") MB (target < $TARGET_MB MB)
OUT
if [ "${1:-}" = "--markdown" ]; then
  cat <<MD

| what ($profile profile) | MB |
| --- | ---: |
| \`accesshub\` as built (line tables) | $(mb "$unstripped") |
| \`accesshub\` in the image (stripped, \`.gnu_debuglink\`) | $(mb "$binary") |
| \`accesshub.debug\` (symbols + line tables, separate artefact) | $(mb "$debug") |
| image layer \`/usr/local/bin\` (the binary and 8 links) | $(mb "$layer") |
| base layer \`gcr.io/distroless/cc-debian12\` (installed size of its Debian packages, upper bound) | $(mb "$base") |
| **image total** (target < $TARGET_MB) | **$(mb "$total")** |
MD
fi
if [ "$total" -ge $((TARGET_MB * 1000000)) ]; then
  log "image total $(mb "$total") MB is over the $TARGET_MB MB target"; exit 1
fi
