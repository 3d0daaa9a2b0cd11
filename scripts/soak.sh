#!/usr/bin/env bash
# Soak test (issue 16): mount `ossmount serve` with random faults (resets, 503s, stalls,
# latency, objects replaced, the mount kill -9'd and remounted, a nearly full cache disk)
# while readers check every byte; prints totals and fails on wrong bytes, crashes or an
# fd leak. Usage: scripts/soak.sh [MINUTES] (default 2). Needs root, /dev/fuse, python3.
# Uses target/debug/ossmount (built by `cargo build`), or $OSSMOUNT_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${1:-2}"
BIN="${OSSMOUNT_BIN:-$PWD/target/debug/ossmount}"
[ -x "$BIN" ] || cargo build --quiet
WORK="$(mktemp -d /tmp/ossmount-soak.XXXXXX)"
trap 'fusermount3 -uz "$WORK/mnt" 2>/dev/null || true; umount -l "$WORK/cache" 2>/dev/null || true; rm -rf "$WORK"' EXIT
python3 scripts/soak.py "$BIN" "$MINUTES" "$WORK"
