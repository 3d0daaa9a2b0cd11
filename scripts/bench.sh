#!/usr/bin/env bash
# Throughput benchmarks, each measured against a limit on the same machine in the same run.
#
#   scripts/bench.sh            # 2 GiB object, median of 3 runs, on loopback and on the
#                               # oss-like link (serve --link oss-like, src/serve/link.rs)
#   scripts/bench.sh --link oss-like   # only on that link (--link loopback: only loopback)
#   scripts/bench.sh --quick    # 256 MiB object, 1 run: checks the script in minutes
#   SIZE_MIB=512 RUNS=5 scripts/bench.sh
#   BENCH_SETTLE_S=0 scripts/bench.sh   # no wait after each drop_caches (scripts/bench/common.sh)
#   MOUNT_S3=/path/to/mount-s3 scripts/bench.sh   # Mountpoint column (else from PATH, else skipped)
#   BENCH_TOOLS="ossmount mountpoint"   # only these FUSE clients (smoke runs)
#   BENCH_BIN=target/debug/ossmount     # use this binary instead of a release build
#   BENCH_DROP=0                        # never drop the page cache (smoke runs on a shared
#                                       # box; "cold" figures are then not cold)
#   BENCH_STORE=disk                    # serve the data from $BENCH_DIR/data itself, not from
#                                       # its copy in tmpfs (see store_dir)
# Smaller data for a smoke run: SIZE_MIB, PAR_MIB, LS_N, SMALL_N, SMALL_KIB, TREE_DIRS,
# TREE_PER, RAND_COUNT, RAND1M_COUNT (docs/benchmarks.md).
#
# Then `ossmount download` of the object against `curl -o` (scripts/bench/download.sh:
# throughput, peak RSS, bytes re-fetched after kill -9 at half; bench-results/download.md).
# Then the same server is read through FUSE by ossmount, rclone mount and s3fs side by side
# (scripts/bench/peers.sh: cold/warm cp, parallel readers, random reads, time to first
# byte, ls -l, kill -9 and remount, peak RSS). Results: bench-results/bench.md (also
# printed) and bench-results/bench.png. Needs root (FUSE, drop_caches, apt-get).
#
# Builds the release binary, makes (or reuses) a random object in $BENCH_DIR, starts
# `ossmount serve --anonymous`, and prints a Markdown table. Baseline: the same file served
# by nginx on loopback (installed with apt-get when missing and possible), else a plain
# local read (`cat > /dev/null`).
#
# Quicker before/after checks on a 1 GiB object, not of record: scripts/bench/coldcp.sh (cold
# cp vs curl) and scripts/bench/ab.sh (cold, warm and hot cp of several builds, interleaved).
#
# Adding a workload: write a `workload_<name>` function that prints one number (MB/s, or
# whatever its unit is) per call, and add a `run_workload "<label>" workload_<name> <unit>`
# line in main(). Helpers: `median`, `curl_mbps URL`, $SERVE_URL, $OBJ, $BENCH_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

BENCH_ARGS="$*"
LINKS=(loopback oss-like)
while [ $# -gt 0 ]; do
  case $1 in
    --quick)
      # Small enough to finish in minutes, large enough to cross many parts and chunks.
      SIZE_MIB=${SIZE_MIB:-256} RUNS=${RUNS:-1} PAR_MIB=${PAR_MIB:-64} LS_N=${LS_N:-2000}
      TREE_DIRS=${TREE_DIRS:-100} TREE_PER=${TREE_PER:-100}
      shift ;;
    --link)
      [ $# -ge 2 ] || { echo "usage: --link loopback|oss-like" >&2; exit 2; }
      LINKS=("$2"); shift 2 ;;
    *) echo "usage: scripts/bench.sh [--quick] [--link loopback|oss-like]" >&2; exit 2 ;;
  esac
done
RESULTS=$ROOT/bench-results
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
SIZE_MIB=${SIZE_MIB:-2048}
RUNS=${RUNS:-3}
BUCKET=bench
OBJ=$BENCH_DIR/data/$BUCKET/obj-${SIZE_MIB}MiB.bin
KEY=$(basename "$OBJ")

SERVE_PID=""
NGINX_PID=""
NGINX_DIR=""
ROWS=()

cleanup() {
  https_teardown
  if [ -n "$SERVE_PID" ]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; fi
  if [ -n "$NGINX_DIR" ]; then rm -rf "$NGINX_DIR"; fi
  if [ "$STORE_DIR" = /dev/shm/ossmount-bench-store ]; then rm -rf "$STORE_DIR"; fi
}
trap cleanup EXIT
# An interrupted run leaves through the EXIT trap too (mounts and servers are torn down).
trap 'exit 130' INT TERM

log() { echo "bench: $*" >&2; }

median() { # numbers as arguments
  printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

build() {
  if [ -n "${BENCH_BIN:-}" ]; then
    # A prebuilt binary (smoke runs: a debug build proves the script, not the figures).
    BIN=$BENCH_BIN
    log "using $BIN (BENCH_BIN), not a fresh release build"
    return 0
  fi
  log "building release binary"
  cargo build --release --quiet
  BIN=$ROOT/target/release/ossmount
}

make_data() {
  mkdir -p "$(dirname "$OBJ")"
  if [ -f "$OBJ" ] && [ "$(stat -c %s "$OBJ")" -eq $((SIZE_MIB * 1024 * 1024)) ]; then
    log "reusing $OBJ"
  else
    log "writing ${SIZE_MIB} MiB of random data to $OBJ"
    head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$OBJ.tmp"
    mv "$OBJ.tmp" "$OBJ"
  fi
  cat "$OBJ" > /dev/null # page cache: every workload reads from memory
}

# Where the emulated store reads its objects: a copy of $BENCH_DIR/data in tmpfs by default
# (BENCH_STORE=tmpfs). A real store's disks are not the client's; served from the same
# disk, every cold row's server reads compete with the very disk the tools write their
# caches and copies to (a cold 1 GiB cp on the oss-like link: 350-390 MiB/s through
# ossmount with the data on this VM's disk, 430-460 from tmpfs; aria2c into the same disk
# 320-350 either way). drop_caches does not empty tmpfs, so the store stays "warm" the way
# a remote one is, and the client side stays cold. The local limits (cp, ls, find of the
# served files) still read $BENCH_DIR/data on disk. BENCH_STORE=disk, or too little room
# in /dev/shm, serves $BENCH_DIR/data itself.
STORE_DIR=""
store_dir() {
  local need have
  STORE_DIR=$BENCH_DIR/data
  [ "${BENCH_STORE:-tmpfs}" = tmpfs ] || { log "store: $STORE_DIR (BENCH_STORE=${BENCH_STORE})"; return 0; }
  need=$(du -sk "$BENCH_DIR/data" | cut -f1)
  have=$(df -k --output=avail /dev/shm 2> /dev/null | tail -1 || echo 0)
  if [ "$have" -lt $((need + (2 << 20))) ]; then
    log "store: $STORE_DIR (/dev/shm has $((have >> 20)) GiB free, needs $((need >> 20)) + 2)"
    return 0
  fi
  STORE_DIR=/dev/shm/ossmount-bench-store
  store_sync
}

# Bring the tmpfs copy up to date (after data is written); rsync renames each file into
# place, so serve never sees one half copied.
store_sync() {
  [ "$STORE_DIR" != "$BENCH_DIR/data" ] || return 0
  command -v rsync > /dev/null || { log "rsync is needed for the tmpfs store (BENCH_STORE=disk to skip)"; exit 1; }
  mkdir -p "$STORE_DIR"
  rsync -a --delete "$BENCH_DIR/data/" "$STORE_DIR/"
  log "store: $STORE_DIR (tmpfs copy of $BENCH_DIR/data, $(du -sh "$STORE_DIR" | cut -f1))"
}

start_serve() {
  local out=$BENCH_DIR/serve.out
  "$BIN" serve "$STORE_DIR" --listen 127.0.0.1:0 --anonymous --testing-aids > "$out" 2> "$BENCH_DIR/serve.err" &
  SERVE_PID=$!
  for _ in $(seq 100); do
    if grep -q "listening on" "$out" 2>/dev/null; then break; fi
    sleep 0.1
  done
  SERVE_URL=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$out" | head -1)
  [ -n "$SERVE_URL" ] || { log "serve did not start: $(cat "$BENCH_DIR/serve.err")"; exit 1; }
  # The first request of a version computes its ETag and CRC-64 (one pass over the file);
  # do it before measuring.
  local t0; t0=$(date +%s.%N)
  curl -sfI "$SERVE_URL/$BUCKET/$KEY" > /dev/null
  log "serve at $SERVE_URL (first HEAD, identity computed: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s)"
}

# Prints MB/s (10^6 bytes per second) of one `curl -o /dev/null` of URL.
curl_mbps() {
  curl -sf -o /dev/null -w '%{speed_download}\n' "$1" | awk '{printf "%.0f\n", $1 / 1e6}'
}

start_nginx() {
  if ! command -v nginx > /dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get > /dev/null; then
      log "installing nginx for the baseline"
      (apt-get install -y -qq nginx > /dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nginx > /dev/null 2>&1; }) || true
    fi
  fi
  command -v nginx > /dev/null || return 1
  NGINX_DIR=$(mktemp -d)
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$NGINX_DIR/nginx.conf" <<EOF
daemon off;
worker_processes 2;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $NGINX_DIR/tmp;
  proxy_temp_path $NGINX_DIR/tmp;
  fastcgi_temp_path $NGINX_DIR/tmp;
  uwsgi_temp_path $NGINX_DIR/tmp;
  scgi_temp_path $NGINX_DIR/tmp;
  server {
    listen 127.0.0.1:$port;
    root $STORE_DIR;
  }
}
EOF
  nginx -c "$NGINX_DIR/nginx.conf" -p "$NGINX_DIR" > /dev/null 2>&1 &
  NGINX_PID=$!
  NGINX_URL=http://127.0.0.1:$port
  for _ in $(seq 50); do
    if curl -sfI "$NGINX_URL/$BUCKET/$KEY" > /dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  log "nginx did not start: $(cat "$NGINX_DIR/error.log" 2>/dev/null)"
  return 1
}

# ---- workloads: each prints one measurement -------------------------------------------

workload_serve_get() { curl_mbps "$SERVE_URL/$BUCKET/$KEY"; }

workload_nginx_get() { curl_mbps "$NGINX_URL/$BUCKET/$KEY"; }

workload_local_read() {
  local t0 t1
  t0=$(date +%s.%N)
  cat "$OBJ" > /dev/null
  t1=$(date +%s.%N)
  echo "$SIZE_MIB $t0 $t1" | awk '{printf "%.0f\n", $1 * 1048576 / ($3 - $2) / 1e6}'
}

# ---------------------------------------------------------------------------------------

# CPU seconds (user + system) a process has used so far.
proc_cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f\n", ($14 + $15) / hz}' "/proc/$1/stat"
}

run_workload() { # label function unit
  local label=$1 fn=$2 unit=$3 vals=() v
  for _ in $(seq "$RUNS"); do
    v=$("$fn")
    vals+=("$v")
  done
  local med; med=$(median "${vals[@]}")
  log "$label: ${vals[*]} -> median $med $unit"
  ROWS+=("$label|$med|$unit|${vals[*]}")
}

print_table() { # baseline label
  local base_label=$1 base=""
  for r in "${ROWS[@]}"; do
    IFS='|' read -r label med _ _ <<< "$r"
    if [ "$label" = "$base_label" ]; then base=$med; fi
  done
  echo
  echo "Object: ${SIZE_MIB} MiB from page cache, loopback, $(nproc) cores, median of $RUNS, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| workload | median | unit | runs | vs $base_label |"
  echo "|---|---:|---|---|---:|"
  for r in "${ROWS[@]}"; do
    IFS='|' read -r label med unit runs <<< "$r"
    local ratio="-"
    if [ -n "$base" ] && [ "$base" != 0 ] && [ "$unit" = "MB/s" ]; then ratio=$(awk -v a="$med" -v b="$base" 'BEGIN {printf "%.2f", a / b}'); fi
    echo "| $label | $med | $unit | $runs | $ratio |"
  done
}

# shellcheck source=scripts/bench/https.sh
source "$ROOT/scripts/bench/https.sh"

# The link of both servers for the next section: loopback (none) or a profile.
set_link() {
  local body='{}'
  [ "$1" = loopback ] || body="{\"link\":\"$1\"}"
  curl -sf -X PUT "$SERVE_URL/_ossmount/faults" -d "$body" > /dev/null
  https_link "$body"
  LINK=$1
  LINK_JSON=$(curl -sf "$SERVE_URL/_ossmount/faults")
  log "link $LINK: $LINK_JSON"
}

main() {
  build
  make_data
  store_dir
  start_serve
  https_setup
  local link
  mkdir -p "$ROOT/bench-results"
  for link in "${LINKS[@]}"; do
    RESULTS=$ROOT/bench-results/$link
    mkdir -p "$RESULTS"
    set_link "$link"
    if [ "$link" = loopback ]; then serve_section; fi
    # shellcheck source=scripts/bench/peers.sh
    source "$ROOT/scripts/bench/peers.sh"
    peers_main
  done
  for link in "${LINKS[@]}"; do cat "$ROOT/bench-results/$link/bench.md"; echo; done > "$ROOT/bench-results/bench.md"
  log "wrote bench-results/bench.md (and per link: bench-results/LINK/bench.md, bench.png)"
}

# serve's own throughput against nginx, then ossmount download against curl (loopback only).
serve_section() {
  local c0 c1
  c0=$(proc_cpu_s "$SERVE_PID")
  run_workload "ossmount serve: curl GET" workload_serve_get MB/s
  c1=$(proc_cpu_s "$SERVE_PID")
  # Load-independent view: the server's own CPU per GiB sent (the box is shared).
  ROWS+=("ossmount serve: server CPU per GiB|$(awk -v a="$c0" -v b="$c1" -v n="$RUNS" -v m="$SIZE_MIB" 'BEGIN {printf "%.2f", (b - a) / n / (m / 1024)}')|s|-")
  local baseline
  if start_nginx; then
    run_workload "nginx (sendfile): curl GET" workload_nginx_get MB/s
    baseline="nginx (sendfile): curl GET"
  else
    log "nginx unavailable; baseline is a local read"
    baseline="local read (cat)"
  fi
  run_workload "local read (cat)" workload_local_read MB/s
  mkdir -p "$RESULTS"
  print_table "$baseline" | tee "$RESULTS/serve.md"

  # shellcheck source=scripts/bench/download.sh
  source "$ROOT/scripts/bench/download.sh"
  download_bench
}

main "$@"
