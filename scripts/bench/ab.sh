#!/usr/bin/env bash
# Side-by-side check of two or more ossmount builds (or option sets) on one 1 GiB object:
# per round, `curl -o` and a local `cp`, then for each build a cold `cp` through a fresh
# mount (with the mount's CPU seconds), a warm `cp` (object finalized in its cache, page
# cache dropped) and a hot `cp` (again at once), builds interleaved so that the VM's
# drifting memory speed hits them alike. Not a benchmark of record (scripts/bench.sh is);
# for before/after decisions. Needs root (FUSE, drop_caches).
#
#   scripts/bench/ab.sh old=/tmp/ossmount-old new=target/release/ossmount
#   ROUNDS=6 scripts/bench/ab.sh pc=target/release/ossmount 'dio=target/release/ossmount --direct-io'
#
# Each argument is NAME=BINARY [mount options...] (quote it when it has options).
# Figures are MiB/s; "cpu" is the mount process's user+system seconds for the cold cp.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
ROUNDS=${ROUNDS:-4}
D=${AB_DIR:-$PWD/target/ab}
OBJ=$D/data/bkt/obj1g.bin
mkdir -p "$D/data/bkt" "$D/mnt"
[ -f "$OBJ" ] || head -c $((1 << 30)) /dev/urandom > "$OBJ"
first=${1#*=}
${first%% *} serve "$D/data" --listen 127.0.0.1:0 --anonymous > "$D/serve.out" 2> "$D/serve.err" &
SP=$!
trap 'kill $SP; fusermount3 -uz "$D/mnt" 2> /dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$D/serve.out" 2> /dev/null && break; sleep 0.1; done
EP=$(sed -n 's/.*listening on //p' "$D/serve.out")
# The same wait after drop_caches as scripts/bench/common.sh, for the same reasons.
BENCH_SETTLE_S=${BENCH_SETTLE_S:-3}
drop() {
  sync; echo 3 > /proc/sys/vm/drop_caches; sleep "$BENCH_SETTLE_S"
  cp --version > /dev/null; curl --version > /dev/null
}
# MiB/s of COMMAND..., which writes $D/copy.
rate() {
  rm -f "$D/copy"
  local a=$EPOCHREALTIME; "$@"
  awk -v a="$a" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", 1024 / (b - a) }'
}
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
check() { cmp -s "$D/copy" "$OBJ" || echo " WRONG DATA ($1)"; }

echo "page cache dropped and ${BENCH_SETTLE_S} s of waiting before each cold and warm copy"
for r in $(seq "$ROUNDS"); do
  drop; line="round $r: curl $(rate curl -sf -o "$D/copy" "$EP/bkt/obj1g.bin")"
  drop; line="$line, local cp $(rate cp "$OBJ" "$D/copy")"
  for spec in "$@"; do
    name=${spec%%=*}; read -r bin opts <<< "${spec#*=}"
    rm -rf "$D/cache"
    # shellcheck disable=SC2086
    "$bin" mount oss://bkt "$D/mnt" --endpoint "$EP" --no-sign-request --cache-dir "$D/cache" $opts
    mp=$(pgrep -n -f " mount oss://bkt $D/mnt ")
    drop; c0=$(cpu "$mp")
    cold=$(rate cp "$D/mnt/obj1g.bin" "$D/copy"); c1=$(cpu "$mp"); line="$line$(check "$name cold")"
    # The cold cp finalized the object; wait for its .done file before the warm copies.
    for _ in $(seq 100); do ls "$D"/cache/*.done > /dev/null 2>&1 && break; sleep 0.1; done
    drop; warm=$(rate cp "$D/mnt/obj1g.bin" "$D/copy"); line="$line$(check "$name warm")"
    hot=$(rate cp "$D/mnt/obj1g.bin" "$D/copy")
    fusermount3 -u "$D/mnt"; sleep 0.5
    line="$line | $name cold $cold (cpu $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')) warm $warm hot $hot"
  done
  echo "$line"
done
rm -f "$D/copy"
