# shellcheck shell=bash
# Side-by-side benchmarks: ossmount against rclone mount (--vfs-cache-mode full) and s3fs
# (use_cache), all reading the same objects from the same `ossmount serve --anonymous` in
# the same run, next to the limit: the same bytes over plain HTTP (curl, or a keep-alive
# Python client for small ranges and listings) and from the local file (cp, ls).
#
# Sourced by scripts/bench.sh, which provides: log, BIN, SERVE_URL, BUCKET, BENCH_DIR,
# SIZE_MIB, OBJ (the big object's file), KEY (its key), RUNS. Entry point: peers_main.
#
# Each workload mounts afresh over an empty cache directory with the page cache dropped
# (that is what "cold" means here), except where it says otherwise.

PEERS_LIB=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=scripts/bench/common.sh
source "$PEERS_LIB/common.sh"
# shellcheck source=scripts/bench/mounts.sh
source "$PEERS_LIB/mounts.sh"
# shellcheck source=scripts/bench/report.sh
source "$PEERS_LIB/report.sh"

RAND_COUNT=${RAND_COUNT:-200}      # random 4 KiB reads per run
RAND1M_COUNT=${RAND1M_COUNT:-50}   # random 1 MiB reads per run
RAND_SEED=20261122
ONE_READERS=8                      # readers of one object at once (GPU ranks, one model file)
SMALL_THREADS=(16 64)              # reader threads over the small objects

peers_setup() {
  PAR_MIB=${PAR_MIB:-$((SIZE_MIB / 4))}
  LS_N=${LS_N:-10000}
  PEERS_WORK=$BENCH_DIR/peers          # mountpoints, cache dirs, copies; emptied each run
  RESULTS=${RESULTS:-$ROOT/bench-results}
  PEERS_RAW=$RESULTS/raw.tsv
  OUT=$PEERS_WORK/out
  BIG_BYTES=$((SIZE_MIB << 20))
  PAR_KEYS=()
  local i
  for i in 1 2 3 4; do PAR_KEYS+=("par/p$i-${PAR_MIB}MiB.bin"); done
  LS_PREFIX=ls-$LS_N/
  SMALL_N=${SMALL_N:-2000}
  SMALL_KIB=${SMALL_KIB:-128}
  SMALL_PREFIX=small-${SMALL_N}x${SMALL_KIB}k/
  TREE_DIRS=${TREE_DIRS:-1000}
  TREE_PER=${TREE_PER:-100}
  TREE_PREFIX=tree-${TREE_DIRS}x${TREE_PER}/

  peers_teardown
  rm -rf "$PEERS_WORK"
  mkdir -p "$PEERS_WORK/out" "$RESULTS"
  : > "$PEERS_RAW"
  : > "$RESULTS/notes.txt"
}

# The four 512 MiB objects and the 10,000 small ones, next to the big object bench.sh made.
peers_make_data() {
  local d=$BENCH_DIR/data/$BUCKET k
  for k in "${PAR_KEYS[@]}"; do
    if [ ! -f "$d/$k" ] || [ "$(stat -c %s "$d/$k")" -ne $((PAR_MIB << 20)) ]; then
      log "writing $PAR_MIB MiB to $d/$k"
      mkdir -p "$(dirname "$d/$k")"
      head -c $((PAR_MIB << 20)) /dev/urandom > "$d/$k.tmp" && mv "$d/$k.tmp" "$d/$k"
    fi
  done
  # The marker lives outside the bucket, so it is not one more object in the listing.
  if [ ! -f "$BENCH_DIR/ls-$LS_N.complete" ]; then
    log "writing $LS_N small objects under $d/$LS_PREFIX"
    mkdir -p "$d/$LS_PREFIX"
    (cd "$d/$LS_PREFIX" && seq -f 'f%05g.txt' 1 "$LS_N" | while read -r f; do echo "$f" > "$f"; done)
    touch "$BENCH_DIR/ls-$LS_N.complete"
  fi
  if [ ! -f "$BENCH_DIR/${SMALL_PREFIX%/}.complete" ]; then
    log "writing $SMALL_N objects of $SMALL_KIB KiB under $d/$SMALL_PREFIX"
    python3 - "$d/$SMALL_PREFIX" "$SMALL_N" "$SMALL_KIB" << 'PY'
import os, sys
d, n, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(d, exist_ok=True)
for i in range(1, n + 1):
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(os.urandom(kib << 10))
PY
    touch "$BENCH_DIR/${SMALL_PREFIX%/}.complete"
  fi
  if [ ! -f "$BENCH_DIR/${TREE_PREFIX%/}.complete" ]; then
    log "writing $((TREE_DIRS * TREE_PER)) keys in $TREE_DIRS directories under $d/$TREE_PREFIX"
    python3 - "$d/$TREE_PREFIX" "$TREE_DIRS" "$TREE_PER" << 'PY'
import os, sys
d, dirs, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(dirs):
    sub = os.path.join(d, f"d{i:04d}")
    os.makedirs(sub, exist_ok=True)
    for j in range(per):
        with open(os.path.join(sub, f"f{j:04d}.txt"), "w") as f:
            f.write(f"{i} {j}\n")
PY
    touch "$BENCH_DIR/${TREE_PREFIX%/}.complete"
  fi
  # Into the store's tmpfs copy, if serve reads one (scripts/bench.sh: store_dir).
  store_sync
  # serve computes an object's ETag and CRC-64 on its first request; pay that now, not in
  # the first cold run of whichever tool comes first.
  for k in "${PAR_KEYS[@]}"; do curl -sfI "$SERVE_URL/$BUCKET/$k" > /dev/null; done
  python3 "$PEERS_LIB/randread.py" list "$SERVE_URL" "$BUCKET" "$LS_PREFIX" > /dev/null
  wait_serve_warm
}

# serve also hashes the whole tree in the background after it starts (other sizes' objects
# too); a hash pass is ~1 s of CPU per 600 MB, so let it finish before measuring anything.
wait_serve_warm() {
  local before after _
  for _ in $(seq 120); do
    before=$(stats_field hash_computations)
    sleep 2
    after=$(stats_field hash_computations)
    if [ "$before" = "$after" ]; then return 0; fi
  done
  log "serve is still hashing after 4 minutes; measuring anyway"
}

# Wait for every PID given; fail if any of them failed (plain `wait A B` reports only B).
wait_all() {
  local p rc=0
  for p in "$@"; do wait "$p" || rc=$?; done
  return "$rc"
}

fresh_cache() { # TOOL -> path of an empty cache dir for it
  local c=$PEERS_WORK/cache-$1
  rm -rf "$c"
  mkdir -p "$c"
  echo "$c"
}

note() { echo "$*" | tee -a "$RESULTS/notes.txt" >&2; }

# Copy FILE to $OUT/copy; prints seconds.
timed_cp() {
  rm -f "$OUT/copy"
  local t0; t0=$(now)
  cp "$1" "$OUT/copy"
  elapsed "$t0"
}

# Reads FILE sequentially 4 KiB at a time (Go's bufio and Java's 8 KiB streams are this
# small), the reader FUSE direct I/O makes slower: each read a round trip through the
# mount. Prints seconds.
timed_small() {
  local t0; t0=$(now)
  dd if="$1" of=/dev/null bs=4k status=none
  elapsed "$t0"
}

check_copy() { # LABEL -- the last copy must equal the served file
  if ! cmp -s "$OUT/copy" "$OBJ"; then note "WRONG DATA: $1 (run $PEERS_RUN)"; fi
}

# ---- the limit: the same bytes without a FUSE client -----------------------------------

# What a good client gets for a whole object: 16 ranged GETs at once into the same disk
# (aria2c -x16 -s16, Debian's aria2), or one curl stream where aria2c is missing. On a link
# with a rate per connection one stream is not the limit; on loopback both are shown.
pget() { # URL FILE
  if command -v aria2c > /dev/null; then
    aria2c -q -x16 -s16 -k1M --allow-overwrite=true --auto-file-renaming=false \
      --file-allocation=none ${BENCH_CA:+--ca-certificate="$BENCH_CA"} \
      -d "$(dirname "$2")" -o "$(basename "$2")" "$1"
  else
    curl -sf ${BENCH_CA:+--cacert "$BENCH_CA"} -o "$2" "$1"
  fi
}

limit_seq() {
  local s p1 pn
  drop_caches
  rm -f "$OUT/copy"
  stats_reset
  local t0; t0=$(now)
  pget "$SERVE_URL/$BUCKET/$KEY" "$OUT/copy"
  pn=$(mibps "$BIG_BYTES" "$(elapsed "$t0")")
  record seq_pget curl "$pn"
  # aria2c asks for open-ended ranges and closes each connection at its piece's end, so
  # the server sends a little past it: its bytes fetched are not the limit's; one curl's are.
  record seq_amp aria2c "$(awk -v b="$(stats_field bytes_sent)" -v s="$BIG_BYTES" 'BEGIN { printf "%.3f\n", b / s }')"
  check_copy "parallel GET limit"
  drop_caches
  rm -f "$OUT/copy"
  stats_reset
  t0=$(now)
  curl -sf -o "$OUT/copy" "$SERVE_URL/$BUCKET/$KEY"
  p1=$(mibps "$BIG_BYTES" "$(elapsed "$t0")")
  record seq_1conn curl "$p1"
  record seq_amp curl "$(awk -v b="$(stats_field bytes_sent)" -v s="$BIG_BYTES" 'BEGIN { printf "%.3f\n", b / s }')"
  # The limit is the better of the two (on loopback, or on a busy box, one stream can beat
  # 16); 8 readers of one object can get at most that rate for one copy of it.
  s=$(awk -v a="$pn" -v b="$p1" 'BEGIN { print (a > b) ? a : b }')
  if awk -v a="$pn" -v b="$p1" 'BEGIN { exit !(b > a) }'; then
    note "run $PEERS_RUN: one curl stream ($p1 MiB/s) beat the parallel GET ($pn MiB/s); the sequential limit is the curl figure"
  fi
  record seq_cold curl "$s"
  record one8 curl "$s"
  drop_caches
  s=$(timed_cp "$OBJ")
  # The warm limit (the same cp) is measured beside ossmount's warm copies: see warm_pair.
  record seq_cold local "$(mibps "$BIG_BYTES" "$s")"
  s=$(timed_cp "$OBJ")
  record seq_hot local "$(mibps "$BIG_BYTES" "$s")"
  rm -f "$OUT/copy"
  drop_caches
  record seq_small local "$(mibps "$BIG_BYTES" "$(timed_small "$OBJ")")"
}

limit_par() {
  local k i=0 pids=() t0 s
  drop_caches
  t0=$(now)
  for k in "${PAR_KEYS[@]}"; do
    i=$((i + 1))
    curl -sf -o "$OUT/par$i" "$SERVE_URL/$BUCKET/$k" &
    pids+=($!)
  done
  wait_all "${pids[@]}"
  s=$(elapsed "$t0")
  record par4 curl "$(mibps $((4 * (PAR_MIB << 20))) "$s")"
  drop_caches
  par_cp local "$BENCH_DIR/data/$BUCKET"
}

limit_rand() {
  local r
  drop_caches
  stats_reset
  r=$(python3 "$PEERS_LIB/randread.py" http "$SERVE_URL/$BUCKET/$KEY" "$BIG_BYTES" "$RAND_COUNT" "$RAND_SEED")
  record rand_p50 curl "$(echo "$r" | cut -d' ' -f1)"
  record rand_p99 curl "$(echo "$r" | cut -d' ' -f2)"
  record rand_amp curl "$(awk -v b="$(stats_field bytes_sent)" -v n="$RAND_COUNT" 'BEGIN { printf "%.2f\n", b / (n * 4096) }')"
  drop_caches
  r=$(python3 "$PEERS_LIB/randread.py" file "$OBJ" "$RAND_COUNT" "$RAND_SEED")
  record rand_p50 local "$(echo "$r" | cut -d' ' -f1)"
  record rand_p99 local "$(echo "$r" | cut -d' ' -f2)"
  drop_caches
  stats_reset
  r=$(python3 "$PEERS_LIB/randread.py" http "$SERVE_URL/$BUCKET/$KEY" "$BIG_BYTES" "$RAND1M_COUNT" "$RAND_SEED" 1048576)
  record rand1m_p50 curl "$(echo "$r" | cut -d' ' -f1)"
  record rand1m_amp curl "$(awk -v b="$(stats_field bytes_sent)" -v n="$RAND1M_COUNT" 'BEGIN { printf "%.2f\n", b / (n * 1048576) }')"
}

# Small objects: as many keep-alive clients as the test has reader threads, one GET each.
limit_small() {
  local t
  for t in "${SMALL_THREADS[@]}"; do
    drop_caches
    record "small$t" curl "$(python3 "$PEERS_LIB/randread.py" many-http "$SERVE_URL" "$BUCKET" "$SMALL_PREFIX" "$SMALL_N" "$t" | cut -d' ' -f1)"
    drop_caches
    record "small$t" local "$(python3 "$PEERS_LIB/randread.py" many-file "$BENCH_DIR/data/$BUCKET/$SMALL_PREFIX" "$SMALL_N" "$t" | cut -d' ' -f1)"
  done
}

# The tree: every ListObjectsV2 page of it (no delimiter: the fewest requests a client can
# make), and ls -lR / find of the served directory.
limit_tree() {
  local r t0 n=$((TREE_DIRS * TREE_PER))
  drop_caches
  r=$(python3 "$PEERS_LIB/randread.py" list "$SERVE_URL" "$BUCKET" "$TREE_PREFIX")
  [ "${r%% *}" -eq "$n" ] || note "HTTP listing of the tree returned ${r%% *} keys, not $n"
  record tree_lsR curl "${r##* }"
  record tree_find curl "${r##* }"
  drop_caches
  t0=$(now)
  ls -lR "$BENCH_DIR/data/$BUCKET/$TREE_PREFIX" > /dev/null
  record tree_lsR local "$(elapsed "$t0")"
  drop_caches
  t0=$(now)
  find "$BENCH_DIR/data/$BUCKET/$TREE_PREFIX" -type f > /dev/null
  record tree_find local "$(elapsed "$t0")"
}

limit_ttfb() {
  local t0
  drop_caches
  t0=$(now)
  curl -sf -r 0-0 -o /dev/null "$SERVE_URL/$BUCKET/$KEY"
  record ttfb curl "$(ms "$(elapsed "$t0")")"
  drop_caches
  t0=$(now)
  head -c 1 "$OBJ" > /dev/null
  record ttfb local "$(ms "$(elapsed "$t0")")"
}

limit_ls() {
  local r t0
  drop_caches
  r=$(python3 "$PEERS_LIB/randread.py" list "$SERVE_URL" "$BUCKET" "$LS_PREFIX")
  [ "${r%% *}" -eq "$LS_N" ] || note "HTTP listing returned ${r%% *} keys, not $LS_N"
  record ls_cold curl "${r##* }"
  drop_caches
  t0=$(now)
  ls -l "$BENCH_DIR/data/$BUCKET/$LS_PREFIX" > /dev/null
  record ls_cold local "$(elapsed "$t0")"
  t0=$(now)
  ls -l "$BENCH_DIR/data/$BUCKET/$LS_PREFIX" > /dev/null
  record ls_warm local "$(elapsed "$t0")"
}

# curl killed at half the object, then `curl -C -` finishes it: what resuming costs when
# nothing but the partial output survives.
limit_kill() {
  local pid
  drop_caches
  rm -f "$OUT/copy"
  stats_reset
  curl -sf -o "$OUT/copy" "$SERVE_URL/$BUCKET/$KEY" &
  pid=$!
  LIVE_PIDS+=("$pid")
  wait_for_half "$pid"
  kill -9 "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  forget_pid "$pid"
  curl -sf -C - -o "$OUT/copy" "$SERVE_URL/$BUCKET/$KEY"
  record kill_amp curl "$(awk -v b="$(stats_field bytes_sent)" -v s="$BIG_BYTES" 'BEGIN { printf "%.3f\n", b / s }')"
  check_copy "curl -C - after kill -9"
  rm -f "$OUT/copy"
}

# Poll the copy's size until half the big object has arrived (or PID ended).
wait_for_half() {
  local pid=$1 size
  while kill -0 "$pid" 2> /dev/null; do
    size=$(stat -c %s "$OUT/copy" 2> /dev/null || echo 0)
    if [ "$size" -ge $((BIG_BYTES / 2)) ]; then return 0; fi
    sleep 0.01
  done
  note "wait_for_half: the copy ended before half ($size bytes)"
}

# ---- the FUSE clients --------------------------------------------------------------------

# Cold cp (and the bytes it made the server send), then the same cp from the tool's warm
# disk cache with the page cache dropped, then once more with the page cache kept.
tool_seq() {
  local tool=$1 s
  drop_caches
  mount_tool "$tool" "$(fresh_cache "$tool")"
  stats_reset
  local c0; c0=$(pid_cpu_s "$MOUNT_PID")
  s=$(timed_cp "$MNT/$KEY")
  record seq_cold "$tool" "$(mibps "$BIG_BYTES" "$s")"
  record seq_cpu "$tool" "$(awk -v a="$c0" -v b="$(pid_cpu_s "$MOUNT_PID")" -v m="$SIZE_MIB" 'BEGIN { printf "%.2f\n", (b - a) / (m / 1024) }')"
  record seq_amp "$tool" "$(awk -v b="$(stats_field bytes_sent)" -v s="$BIG_BYTES" 'BEGIN { printf "%.3f\n", b / s }')"
  check_copy "$tool cold cp"
  # The mount is fresh, so its VmHWM so far is its peak during the cold cp.
  record rss_cp "$tool" "$(awk '/^VmHWM:/ { printf "%.0f\n", $2 / 1024 }' "/proc/$MOUNT_PID/status")"
  warm_pair "$tool"
  s=$(timed_cp "$MNT/$KEY")
  record seq_hot "$tool" "$(mibps "$BIG_BYTES" "$s")"
  rm -f "$OUT/copy"
  unmount_tool "$tool"
}

# Warm cp: twice from the tool's cache and twice from the served file, page cache dropped
# before each, in the order tool, local, local, tool. A cold read of the same local file
# on this VM varies from one minute to the next (570-1500 MiB/s in by-hand rounds), so a
# limit measured a minute earlier, at the start of the run, set the warm ratio as much as
# the tool did (0.36-1.1 round to round); taken around the tool's copies, drift that is
# linear over the four copies cancels. The local copies beside ossmount's are the row's
# limit; beside the peers they are only taken so that every tool is measured the same way.
# Each figure is the pair's total bytes over its total time; the tool's copy ends last, so
# the hot cp after this reads from the page cache it left.
warm_pair() {
  local tool=$1 t1 l1 l2 t2
  drop_caches; t1=$(timed_cp "$MNT/$KEY")
  drop_caches; l1=$(timed_cp "$OBJ")
  drop_caches; l2=$(timed_cp "$OBJ")
  drop_caches; t2=$(timed_cp "$MNT/$KEY")
  check_copy "$tool warm cp"
  record seq_warm "$tool" "$(awk -v a="$t1" -v b="$t2" -v m="$SIZE_MIB" 'BEGIN { printf "%.1f\n", 2 * m / (a + b) }')"
  if [ "$tool" = ossmount ]; then
    record seq_warm local "$(awk -v a="$l1" -v b="$l2" -v m="$SIZE_MIB" 'BEGIN { printf "%.1f\n", 2 * m / (a + b) }')"
  fi
}

tool_small() {
  local tool=$1
  drop_caches
  mount_tool "$tool" "$(fresh_cache "$tool")"
  record seq_small "$tool" "$(mibps "$BIG_BYTES" "$(timed_small "$MNT/$KEY")")"
  unmount_tool "$tool"
}

# The four PAR_KEYS objects copied at once out of DIR; records the aggregate MiB/s as COLUMN.
par_cp() {
  local column=$1 dir=$2 k i=0 pids=() t0
  t0=$(now)
  for k in "${PAR_KEYS[@]}"; do
    i=$((i + 1))
    cp "$dir/$k" "$OUT/par$i" &
    pids+=($!)
  done
  wait_all "${pids[@]}"
  record par4 "$column" "$(mibps $((4 * (PAR_MIB << 20))) "$(elapsed "$t0")")"
  rm -f "$OUT"/par*
}

tool_par() {
  local tool=$1
  drop_caches
  mount_tool "$tool" "$(fresh_cache "$tool")"
  par_cp "$tool" "$MNT"
  unmount_tool "$tool"
}

tool_rand() {
  local tool=$1 r
  drop_caches
  mount_tool "$tool" "$(fresh_cache "$tool")"
  stats_reset
  r=$(python3 "$PEERS_LIB/randread.py" file "$MNT/$KEY" "$RAND_COUNT" "$RAND_SEED")
  record rand_p50 "$tool" "$(echo "$r" | cut -d' ' -f1)"
  record rand_p99 "$tool" "$(echo "$r" | cut -d' ' -f2)"
  record rand_amp "$tool" "$(awk -v b="$(stats_field bytes_sent)" -v n="$RAND_COUNT" 'BEGIN { printf "%.2f\n", b / (n * 4096) }')"
  unmount_tool "$tool"
}

tool_rand1m() {
  local tool=$1 r
  drop_caches
  mount_tool "$tool" "$(fresh_cache "$tool")"
  stats_reset
  r=$(python3 "$PEERS_LIB/randread.py" file "$MNT/$KEY" "$RAND1M_COUNT" "$RAND_SEED" 1048576)
  record rand1m_p50 "$tool" "$(echo "$r" | cut -d' ' -f1)"
  record rand1m_amp "$tool" "$(awk -v b="$(stats_field bytes_sent)" -v n="$RAND1M_COUNT" 'BEGIN { printf "%.2f\n", b / (n * 1048576) }')"
  unmount_tool "$tool"
}

# ONE_READERS readers of the big object at once, cold: the object's size over the time
# until the last one is done, and the bytes fetched per byte of the object (1.0: each part
# fetched once and shared).
tool_one8() {
  local tool=$1 i pids=() t0
  drop_caches
  mount_tool "$tool" "$(fresh_cache "$tool")"
  stats_reset
  t0=$(now)
  for i in $(seq "$ONE_READERS"); do
    dd if="$MNT/$KEY" of=/dev/null bs=1M status=none &
    pids+=($!)
  done
  wait_all "${pids[@]}"
  record one8 "$tool" "$(mibps "$BIG_BYTES" "$(elapsed "$t0")")"
  record one8_amp "$tool" "$(awk -v b="$(stats_field bytes_sent)" -v s="$BIG_BYTES" 'BEGIN { printf "%.3f\n", b / s }')"
  unmount_tool "$tool"
}

# The small objects read whole by T threads (one open and read per object) through a fresh
# mount whose directory was listed first (untimed: the HTTP limit knows the names too).
tool_small_objects() {
  local tool=$1 t
  for t in "${SMALL_THREADS[@]}"; do
    drop_caches
    mount_tool "$tool" "$(fresh_cache "$tool")"
    ls "$MNT/$SMALL_PREFIX" > /dev/null
    stats_reset
    record "small$t" "$tool" "$(python3 "$PEERS_LIB/randread.py" many-file "$MNT/$SMALL_PREFIX" "$SMALL_N" "$t" | cut -d' ' -f1)"
    record "small${t}_amp" "$tool" "$(awk -v b="$(stats_field bytes_sent)" -v s="$((SMALL_N * SMALL_KIB * 1024))" 'BEGIN { printf "%.3f\n", b / s }')"
    RSS_TAG=$t unmount_tool "$tool"
  done
}

# ls -lR, then (another fresh mount) find, of the tree.
tool_tree() {
  local tool=$1 t0 n=$((TREE_DIRS * TREE_PER)) got
  drop_caches
  mount_tool "$tool" "$(fresh_cache "$tool")"
  t0=$(now)
  ls -lR "$MNT/$TREE_PREFIX" > "$OUT/lsR"
  record tree_lsR "$tool" "$(elapsed "$t0")"
  got=$(grep -c '^-' "$OUT/lsR" || true)
  [ "$got" -eq "$n" ] || note "$tool: ls -lR listed $got files, not $n"
  RSS_TAG=_lsR unmount_tool "$tool"
  drop_caches
  mount_tool "$tool" "$(fresh_cache "$tool")"
  t0=$(now)
  got=$(find "$MNT/$TREE_PREFIX" -type f | wc -l)
  record tree_find "$tool" "$(elapsed "$t0")"
  [ "$got" -eq "$n" ] || note "$tool: find listed $got files, not $n"
  RSS_TAG=_find unmount_tool "$tool"
}

tool_ttfb() {
  local tool=$1 t0
  drop_caches
  mount_tool "$tool" "$(fresh_cache "$tool")"
  t0=$(now)
  head -c 1 "$MNT/$KEY" > /dev/null
  record ttfb "$tool" "$(ms "$(elapsed "$t0")")"
  unmount_tool "$tool"
}

tool_ls() {
  local tool=$1 t0 n
  drop_caches
  mount_tool "$tool" "$(fresh_cache "$tool")"
  t0=$(now)
  ls -l "$MNT/$LS_PREFIX" > "$OUT/ls"
  record ls_cold "$tool" "$(elapsed "$t0")"
  t0=$(now)
  ls -l "$MNT/$LS_PREFIX" > /dev/null
  record ls_warm "$tool" "$(elapsed "$t0")"
  n=$(grep -c '^-' "$OUT/ls" || true)
  [ "$n" -eq "$LS_N" ] || note "$tool: ls -l listed $n files, not $LS_N"
  unmount_tool "$tool"
}

# kill -9 the mount at half a cold cp, remount on the same cache dir, cp again from the
# start: the bytes the server sent in all, per byte of the object (1.0 = nothing twice).
tool_kill() {
  local tool=$1 cache cpid
  drop_caches
  cache=$(fresh_cache "$tool")
  mount_tool "$tool" "$cache"
  stats_reset
  rm -f "$OUT/copy"
  cp "$MNT/$KEY" "$OUT/copy" 2> /dev/null &
  cpid=$!
  LIVE_PIDS+=("$cpid")
  wait_for_half "$cpid"
  sample_rss "$tool"
  kill -9 "$MOUNT_PID"
  wait "$cpid" 2> /dev/null || true   # cp fails: the mount went away under it
  forget_pid "$cpid"
  reap "$MOUNT_PID"
  detach_dead_mount
  mount_tool "$tool" "$cache"
  timed_cp "$MNT/$KEY" > /dev/null
  record kill_amp "$tool" "$(awk -v b="$(stats_field bytes_sent)" -v s="$BIG_BYTES" 'BEGIN { printf "%.3f\n", b / s }')"
  check_copy "$tool cp after kill -9 and remount"
  rm -f "$OUT/copy"
  unmount_tool "$tool"
}

peers_main() {
  peers_install
  peers_setup
  trap 'peers_teardown; cleanup' EXIT
  peers_make_data
  log "peers (${LINK:-loopback}): ${SIZE_MIB} MiB object, 4 x ${PAR_MIB} MiB, ${LS_N} + $SMALL_N x $SMALL_KIB KiB small objects, tree of $((TREE_DIRS * TREE_PER)), $RUNS run(s), tools: ${TOOLS[*]}"
  [ -n "$MOUNT_S3" ] || note "Mountpoint (mount-s3) not found (MOUNT_S3=PATH or PATH): its column is empty; install AWS's mount-s3 package or build awslabs/mountpoint-s3 (cargo build --release) to fill it"
  local tool
  for PEERS_RUN in $(seq "$RUNS"); do
    log "== run $PEERS_RUN of $RUNS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    PEAK_RSS_KB=()
    limit_seq; limit_par; limit_rand; limit_small; limit_ttfb; limit_ls; limit_tree; limit_kill
    for tool in "${TOOLS[@]}"; do
      log "-- $tool"
      tool_seq "$tool"
      tool_small "$tool"
      tool_par "$tool"
      tool_one8 "$tool"
      tool_small_objects "$tool"
      tool_rand "$tool"
      tool_rand1m "$tool"
      tool_ttfb "$tool"
      tool_ls "$tool"
      tool_tree "$tool"
      tool_kill "$tool"
      record rss "$tool" "$(awk -v k="${PEAK_RSS_KB[$tool]:-0}" 'BEGIN { printf "%.0f\n", k / 1024 }')"
    done
    if [ -n "${TLS_URL:-}" ]; then tool_https; fi
  done
  peers_report
}
