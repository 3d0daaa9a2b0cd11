# shellcheck shell=bash
# Helpers for the side-by-side benchmarks (sourced by scripts/bench.sh through peers.sh):
# packages, timing, recording figures, page cache, the server's counters.
#
# Every figure goes through `record ROW COLUMN VALUE` into $PEERS_RAW (row, column, run,
# value; tab-separated), so the table and the chart are computed from what this run
# measured and nothing else.

# Install what the peers section needs when it is missing (Debian; we run as root because
# FUSE mounts by others and drop_caches need it anyway).
peers_install() {
  local need=()
  command -v fusermount3 > /dev/null || need+=(fuse3)
  command -v rclone > /dev/null || need+=(rclone)
  command -v s3fs > /dev/null || need+=(s3fs)
  command -v gnuplot > /dev/null || need+=(gnuplot-nox)
  command -v curl > /dev/null || need+=(curl)
  command -v aria2c > /dev/null || need+=(aria2)
  command -v python3 > /dev/null || need+=(python3)
  command -v mountpoint > /dev/null || need+=(util-linux)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" > /dev/null
  fi
  [ -e /dev/fuse ] || { log "/dev/fuse is missing: no FUSE mounts possible"; exit 1; }
  [ -w /proc/sys/vm/drop_caches ] || { log "needs root: cold runs drop the page cache"; exit 1; }
}

now() { echo "$EPOCHREALTIME"; }            # seconds with microseconds, no fork
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.6f\n", b - a }'; }

# Seconds to wait after dropping the page cache, before anything is measured.
# On a VM whose virtio balloon does free page reporting, the memory drop_caches frees is
# handed back to the host within 1-2 s, and first touching it after that costs 3-4x the
# kernel CPU: a 1 GiB `dd bs=1M` of a local file took 0.75 s (0.37 s sys) right after
# drop_caches and 2.3-3.3 s (2-3 s sys) 3 s later, on the 2-vCPU VM this was measured on.
# Without a wait, a cold figure depended on how soon its tool started (curl at once, a
# mount after its start-up), and runs alternated between the two states. With it, every
# cold run of every tool starts with the freed memory already returned. BENCH_SETTLE_S=0
# turns it off (where freed memory stays with the guest). The report states the value.
BENCH_SETTLE_S=${BENCH_SETTLE_S:-3}

# Cold means cold for everyone: the served files, the tools' cache files and the output.
# The client programs themselves are loaded again after the settle, so that a cold
# `head -c 1` or `curl` measures the read, not loading curl's libraries from disk.
BENCH_DROP=${BENCH_DROP:-1}
drop_caches() {
  if [ "$BENCH_DROP" = 0 ]; then return 0; fi
  sync
  echo 3 > /proc/sys/vm/drop_caches
  sleep "$BENCH_SETTLE_S"
  cp --version > /dev/null
  dd --version > /dev/null
  head --version > /dev/null
  ls --version > /dev/null
  curl --version > /dev/null
  python3 -c 'import http.client, random, re, urllib.parse'
}

# record ROW COLUMN VALUE -- one measurement of run $PEERS_RUN.
record() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$PEERS_RUN" "$3" >> "$PEERS_RAW"
  log "  $1 / $2 = $3"
}

# MiB/s for BYTES moved in SECONDS.
mibps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f\n", b / 1048576 / s }'; }
ms() { awk -v s="$1" 'BEGIN { printf "%.2f\n", s * 1000 }'; }

# ---- the server's counters (GET /_ossmount/stats, POST /_ossmount/stats/reset) --------

stats_reset() { curl -sf -X POST "$SERVE_URL/_ossmount/stats/reset" > /dev/null; }
stats_field() { # FIELD -> integer
  curl -sf "$SERVE_URL/_ossmount/stats" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}

# CPU seconds (user + system) process PID has used so far: a view of each tool's cost that
# does not depend on how busy the shared machine is.
pid_cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}
