# shellcheck shell=bash
# `ossmount download` against its limit, `curl -o` of the same object from the same server
# to the same disk, in the same run (its targets: >= 0.9x curl, peak RSS < 128 MiB, and few
# bytes re-fetched after a kill -9 at half way). Sourced by scripts/bench.sh, which has
# started serve ($SERVE_URL) and made the object ($OBJ, $KEY, $SIZE_MIB); writes
# $RESULTS/download.md.
#
# Each run starts with the output file removed and dirty pages synced, the served file in
# the page cache (as for the serve table above). curl leaves its bytes in the page cache;
# ossmount download fsyncs before it renames, so the comparison is not in its favour.

dl_now() { echo "$EPOCHREALTIME"; }
dl_mibps() { awk -v b="$1" -v a="$2" -v c="$3" 'BEGIN { printf "%.0f\n", b / 1048576 / (c - a) }'; }

download_bench() {
  command -v /usr/bin/time > /dev/null || {
    log "installing time (peak RSS of the download)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time > /dev/null
  }
  local out=$BENCH_DIR/dl-out.bin bytes=$((SIZE_MIB * 1048576))
  local curl_v=() dl_v=() rss_v=() amp_v=() t0 t1 i
  cat "$OBJ" > /dev/null
  for i in $(seq "$RUNS"); do
    rm -f "$out"* && sync
    t0=$(dl_now)
    curl -sf -o "$out" "$SERVE_URL/$BUCKET/$KEY"
    t1=$(dl_now)
    curl_v+=("$(dl_mibps "$bytes" "$t0" "$t1")")
    rm -f "$out"* && sync
    t0=$(dl_now)
    /usr/bin/time -f %M -o "$BENCH_DIR/dl.rss" "$BIN" download "oss://$BUCKET/$KEY" "$out" \
      --endpoint "$SERVE_URL" --no-sign-request 2> /dev/null
    t1=$(dl_now)
    dl_v+=("$(dl_mibps "$bytes" "$t0" "$t1")")
    rss_v+=("$(awk '{ printf "%.0f\n", $1 / 1024 }' "$BENCH_DIR/dl.rss")")
    cmp -s "$out" "$OBJ" || { log "WRONG DATA: ossmount download (run $i)"; exit 1; }
    # kill -9 once half the object was sent, then the same command again.
    rm -f "$out"* && sync
    curl -sf -X POST "$SERVE_URL/_ossmount/stats/reset" > /dev/null
    "$BIN" download "oss://$BUCKET/$KEY" "$out" --endpoint "$SERVE_URL" --no-sign-request 2> /dev/null &
    local pid=$!
    while kill -0 "$pid" 2> /dev/null; do
      [ "$(dl_sent)" -ge $((bytes / 2)) ] && break
      sleep 0.005
    done
    kill -9 "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    "$BIN" download "oss://$BUCKET/$KEY" "$out" --endpoint "$SERVE_URL" --no-sign-request 2> /dev/null
    cmp -s "$out" "$OBJ" || { log "WRONG DATA: ossmount download after kill -9 (run $i)"; exit 1; }
    amp_v+=("$(awk -v b="$(dl_sent)" -v s="$bytes" 'BEGIN { printf "%.3f\n", b / s }')")
    log "download run $i: curl ${curl_v[-1]} MiB/s, ossmount ${dl_v[-1]} MiB/s, peak RSS ${rss_v[-1]} MiB, after kill -9 fetched ${amp_v[-1]} x size"
  done
  rm -f "$out"*
  local c d r a
  c=$(median "${curl_v[@]}") d=$(median "${dl_v[@]}") r=$(median "${rss_v[@]}") a=$(median "${amp_v[@]}")
  {
    echo
    echo "Object: ${SIZE_MIB} MiB, loopback, $(nproc) cores, median of $RUNS, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| workload | median | unit | runs | ratio |"
    echo "|---|---:|---|---|---:|"
    echo "| curl -o (the limit) | $c | MiB/s | ${curl_v[*]} | 1.00 |"
    echo "| ossmount download | $d | MiB/s | ${dl_v[*]} | $(awk -v a="$d" -v b="$c" 'BEGIN { printf "%.2f", a / b }') (vs curl; target >= 0.9) |"
    echo "| ossmount download: peak RSS | $r | MiB | ${rss_v[*]} | - (target < 128) |"
    echo "| kill -9 at half, same command again: bytes fetched / size | $a | x | ${amp_v[*]} | $(awk -v a="$a" 'BEGIN { printf "%.0f MiB re-fetched", (a - 1) * '"$SIZE_MIB"' }') |"
  } | tee "$RESULTS/download.md"
}

dl_sent() { curl -sf "$SERVE_URL/_ossmount/stats" | sed -n 's/.*"bytes_sent":\([0-9]*\).*/\1/p'; }
