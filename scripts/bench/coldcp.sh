#!/usr/bin/env bash
# One-minute check of the cold read path: `cp` of a 1 GiB object through a fresh mount vs
# `curl -o` of it, page cache dropped before each, plus the mount's CPU seconds and peak
# RSS. Not a benchmark of record (scripts/bench.sh is); for before/after comparisons while
# changing src/fetch.rs or src/cache/. Needs root (FUSE, drop_caches).
#
#   scripts/bench/coldcp.sh [RUNS] [extra mount options...]
#   BENCH_SETTLE_S=0 scripts/bench/coldcp.sh   # no wait after dropping the page cache
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}; shift || true
cargo build --release --quiet
BIN=$PWD/target/release/ossmount
D=${COLDCP_DIR:-$PWD/target/coldcp}
OBJ=$D/data/bkt/obj1g.bin
mkdir -p "$D/data/bkt" "$D/mnt"
[ -f "$OBJ" ] || head -c $((1 << 30)) /dev/urandom > "$OBJ"
SZ=$(stat -c %s "$OBJ")
"$BIN" serve "$D/data" --listen 127.0.0.1:0 --anonymous > "$D/serve.out" 2> "$D/serve.err" &
SP=$!
trap 'kill $SP; fusermount3 -uz "$D/mnt" 2> /dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$D/serve.out" 2> /dev/null && break; sleep 0.1; done
EP=$(sed -n 's/.*listening on //p' "$D/serve.out")
curl -sfI "$EP/bkt/obj1g.bin" > /dev/null
# Drop the page cache, then wait for the freed memory to go back to the host (free page
# reporting; touching it afterwards is 3-4x slower, so without the wait curl, which starts
# at once, and the mount, which starts later, began in different states). Same wait and
# reasons as drop_caches in scripts/bench/common.sh. cp and curl are loaded again after it.
BENCH_SETTLE_S=${BENCH_SETTLE_S:-3}
drop() {
  sync; echo 3 > /proc/sys/vm/drop_caches; sleep "$BENCH_SETTLE_S"
  cp --version > /dev/null; curl --version > /dev/null
}
secs() { local a; a=$EPOCHREALTIME; "$@"; awk -v a="$a" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }'; }
echo "page cache dropped before each copy, then ${BENCH_SETTLE_S} s of waiting (BENCH_SETTLE_S)"
for r in $(seq "$RUNS"); do
  rm -f "$D/copy"; drop
  tc=$(secs curl -sf -o "$D/copy" "$EP/bkt/obj1g.bin")
  rm -f "$D/copy"; rm -rf "$D/cache"; drop
  "$BIN" mount oss://bkt "$D/mnt" --endpoint "$EP" --no-sign-request --cache-dir "$D/cache" "$@"
  MP=$(pgrep -n -f "ossmount mount oss://bkt $D/mnt")
  c0=$(awk '{ print $14 + $15 }' "/proc/$MP/stat")
  tm=$(secs cp "$D/mnt/obj1g.bin" "$D/copy")
  c1=$(awk '{ print $14 + $15 }' "/proc/$MP/stat")
  hwm=$(awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$MP/status")
  cmp -s "$D/copy" "$OBJ" || echo "WRONG DATA"
  fusermount3 -u "$D/mnt"; sleep 0.5
  awk -v s="$SZ" -v tc="$tc" -v tm="$tm" -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v r="$r" -v h="$hwm" \
    'BEGIN { printf "run %d: curl %.0f MiB/s, mount %.0f MiB/s, ratio %.2f, mount CPU %.2f s/GiB, VmHWM %d MiB\n",
             r, s / 1048576 / tc, s / 1048576 / tm, tc / tm, c / hz / (s / 1073741824), h }'
done
rm -f "$D/copy"
