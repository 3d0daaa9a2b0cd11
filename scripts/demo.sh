#!/usr/bin/env bash
# The main job on the embedded default: build ossmount, start `ossmount serve` (a local
# OSS-compatible server) on generated sample data, mount the bucket through FUSE, list it,
# and copy a large object out with `cp` -- first cold (fetched part by part over HTTP into
# the cache), then warm (served from the finalized cache file). Cleans up after itself.
#
#   scripts/demo.sh            # 512 MiB sample object
#   DEMO_SIZE_MIB=2048 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${DEMO_SIZE_MIB:-512}
WORK=${DEMO_DIR:-$(mktemp -d /tmp/ossmount-demo.XXXXXX)}
DATA=$WORK/data MNT=$WORK/mnt CACHE=$WORK/cache OUT=$WORK/out

if ! command -v fusermount3 >/dev/null; then
  echo "== installing fuse3"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
fi

echo "== building (release)"
cargo build --release --quiet
BIN=$PWD/target/release/ossmount

cleanup() {
  fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null || true
  [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== sample data in $DATA (bucket 'demo')"
mkdir -p "$DATA/demo/genomes/2026" "$DATA/demo/docs" "$MNT" "$CACHE" "$OUT"
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$DATA/demo/genomes/2026/sample.bam"
for i in $(seq 1 20); do echo "report $i" > "$DATA/demo/docs/report-$i.txt"; done
echo "hello from ossmount" > "$DATA/demo/README.txt"

export OSS_ACCESS_KEY_ID=demo-access-key OSS_ACCESS_KEY_SECRET=demo-secret-key
"$BIN" serve "$DATA" --listen 127.0.0.1:0 --testing-aids > "$WORK/serve.out" 2> "$WORK/serve.log" &
SERVE_PID=$!
for _ in $(seq 1 100); do grep -q listening "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
ENDPOINT=$(sed -n 's/.*listening on //p' "$WORK/serve.out")
echo "== ossmount serve is up at $ENDPOINT"

echo "== ossmount mount oss://demo $MNT"
"$BIN" mount oss://demo "$MNT" --endpoint "$ENDPOINT" --region cn-hangzhou --cache-dir "$CACHE"
ls -lR "$MNT"

echo "== cold cp (fetched over HTTP, cached part by part)"
time cp "$MNT/genomes/2026/sample.bam" "$OUT/cold.bam"
cmp "$OUT/cold.bam" "$DATA/demo/genomes/2026/sample.bam" && echo "cold copy identical"

echo "== warm cp (served from the verified, finalized cache file)"
time cp "$MNT/genomes/2026/sample.bam" "$OUT/warm.bam"
cmp "$OUT/warm.bam" "$DATA/demo/genomes/2026/sample.bam" && echo "warm copy identical"

echo "== server counters (bytes sent = fetched once)"
curl -s "$ENDPOINT/_ossmount/stats"; echo
"$BIN" cache status --cache-dir "$CACHE"
