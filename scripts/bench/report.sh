# shellcheck shell=bash
# The peers table (Markdown) and chart (gnuplot PNG), both computed from $PEERS_RAW, the
# measurements of this run: each cell is the median over the runs.

COLUMNS_ALL=(curl local ossmount rclone s3fs mountpoint)
PEERS_ALL=(rclone s3fs mountpoint)

# id | label | unit | direction (up: higher is better) | the limit column ossmount is held to
peers_rows() {
  cat << EOF
seq_cold|cold sequential cp, ${SIZE_MIB} MiB object (limit: the better of the two rows below)|MiB/s|up|curl
seq_pget|16 ranged GETs at once of the same object into the same disk (aria2c -x16 -s16)|MiB/s|up|-
seq_1conn|one curl stream of the same object|MiB/s|up|-
seq_amp|cold cp: bytes fetched / object size|x|down|curl
seq_cpu|cold cp: CPU seconds of the mount process per GiB|s/GiB|down|-
seq_warm|warm cp (tool cache on disk, page cache dropped); local: cp|MiB/s|up|local
seq_hot|hot cp (again at once, page cache kept)|MiB/s|up|local
seq_small|cold sequential read in 4 KiB reads (dd bs=4k)|MiB/s|up|local
par4|4 readers x ${PAR_MIB} MiB objects at once, cold (aggregate; limit: 4 curls)|MiB/s|up|curl
one8|${ONE_READERS} readers of ONE ${SIZE_MIB} MiB object at once, cold (object size / time to the last; limit: the parallel GET)|MiB/s|up|curl
one8_amp|${ONE_READERS} readers of one object: bytes fetched / object size|x|down|-
small16|${SMALL_N} x ${SMALL_KIB} KiB objects, 16 reader threads (limit: 16 keep-alive clients, one GET each)|files/s|up|curl
small64|${SMALL_N} x ${SMALL_KIB} KiB objects, 64 reader threads (limit: 64 keep-alive clients)|files/s|up|curl
small16_amp|small objects, 16 threads: bytes fetched / bytes read|x|down|-
rand_p50|${RAND_COUNT} random 4 KiB reads, cold: median latency (limit: one ranged GET each)|ms|down|curl
rand_p99|${RAND_COUNT} random 4 KiB reads, cold: 99th percentile|ms|down|curl
rand_amp|random 4 KiB reads: bytes fetched / bytes read|x|down|curl
rand1m_p50|${RAND1M_COUNT} random 1 MiB reads, cold: median latency|ms|down|curl
rand1m_amp|random 1 MiB reads: bytes fetched / bytes read|x|down|curl
ttfb|time to first byte (head -c 1), fresh mount|ms|down|curl
ls_cold|ls -l of ${LS_N} objects, fresh mount|s|down|curl
ls_warm|ls -l of ${LS_N} objects again (warm)|s|down|local
tree_lsR|ls -lR of $((TREE_DIRS * TREE_PER)) keys in ${TREE_DIRS} directories, fresh mount (limit: ListObjectsV2 of all)|s|down|curl
tree_find|find of the same tree, fresh mount|s|down|curl
kill_amp|kill -9 at half a cold cp, remount, cp: bytes fetched / size|x|down|curl
https_cold|cold cp over HTTPS (serve --tls-cert; limit: curl --cacert; peers not measured)|MiB/s|up|curl
https_cpu|cold cp over HTTPS: CPU seconds per GiB (mount process; curl for the limit)|s/GiB|down|-
rss_cp|peak RSS of the mount process during the cold cp|MiB|down|-
rss|peak RSS of the mount process (max over the workloads of a run)|MiB|down|-
EOF
}

# $RESULTS/medians.tsv: row, column, median, number of runs.
peers_medians() {
  sort -t $'\t' -k1,1 -k2,2 -k4,4g "$PEERS_RAW" | awk -F '\t' '
    function flush() { if (n) printf "%s\t%s\t%s\t%d\n", r, c, v[int((n + 1) / 2)], n }
    $1 != r || $2 != c { flush(); r = $1; c = $2; n = 0 }
    { v[++n] = $4 }
    END { flush() }' > "$RESULTS/medians.tsv"
}

median_of() { # ROW COLUMN -> median or empty
  awk -F '\t' -v r="$1" -v c="$2" '$1 == r && $2 == c { print $3 }' "$RESULTS/medians.tsv"
}

fmt() { # number -> 3 significant digits, plain notation
  [ -n "$1" ] || { echo "-"; return; }
  awk -v x="$1" 'BEGIN {
    a = x < 0 ? -x : x
    if (a >= 100) printf "%.0f", x; else if (a >= 10) printf "%.1f", x;
    else if (a >= 1) printf "%.2f", x; else printf "%.3f", x }'
}

ratio() { # A B -> A/B, or "-"
  if [ -z "$1" ] || [ -z "$2" ]; then echo "-"; return; fi
  local r; r=$(awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print ""; else printf "%.6g", a / b }')
  fmt "$r"
}

peers_table() {
  local id label unit dir ref c v best bestname
  echo "| workload | unit | limit: HTTP | limit: local | ossmount | rclone | s3fs | Mountpoint | ossmount / limit | ossmount / best peer | ossmount / Mountpoint |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  while IFS='|' read -r id label unit dir ref; do
    local cells=() vals=()
    for c in "${COLUMNS_ALL[@]}"; do
      v=$(median_of "$id" "$c")
      vals+=("$v")
      cells+=("$(fmt "$v")")
    done
    # A row nobody measured (e.g. HTTPS without openssl) is left out.
    [ -n "${vals[*]// /}" ] || continue
    # best peer: the best of rclone, s3fs and Mountpoint in this row's direction
    best="" bestname=""
    for c in "${PEERS_ALL[@]}"; do
      v=$(median_of "$id" "$c")
      [ -n "$v" ] || continue
      if [ -z "$best" ] || awk -v a="$v" -v b="$best" -v d="$dir" 'BEGIN { exit !((d == "up") ? a > b : a < b) }'; then
        best=$v bestname=$c
      fi
    done
    local arrow="higher is better"; [ "$dir" = up ] || arrow="lower is better"
    local lim="-"; [ "$ref" = "-" ] || lim="$(ratio "${vals[2]}" "$(median_of "$id" "$ref")") (vs $ref)"
    local peer="-"; [ -z "$best" ] || peer="$(ratio "${vals[2]}" "$best") (vs $bestname)"
    local mp; mp=$(ratio "${vals[2]}" "${vals[5]}")
    echo "| $label | $unit, $arrow | ${cells[0]} | ${cells[1]} | ${cells[2]} | ${cells[3]} | ${cells[4]} | ${cells[5]} | $lim | $peer | $mp |"
  done < <(peers_rows)
}

# Peak RSS (VmHWM, MiB) of each tool's mount in each workload (each mounts afresh).
peers_rss_table() {
  local rows
  rows=$(awk -F '\t' '$1 ~ /^rss:/ { print $1 }' "$RESULTS/medians.tsv" | sort -u)
  [ -n "$rows" ] || return 0
  echo "| workload (peak RSS, MiB) | ossmount | rclone | s3fs | Mountpoint | ossmount / Mountpoint |"
  echo "|---|---:|---:|---:|---:|---:|"
  local r
  for r in $rows; do
    local o rc s m
    o=$(median_of "$r" ossmount) rc=$(median_of "$r" rclone) s=$(median_of "$r" s3fs) m=$(median_of "$r" mountpoint)
    echo "| ${r#rss:} | $(fmt "$o") | $(fmt "$rc") | $(fmt "$s") | $(fmt "$m") | $(ratio "$o" "$m") |"
  done
}

# One small bar chart per workload (each has its own unit), all on one PNG.
peers_chart() {
  local png=$RESULTS/bench.png dat=$RESULTS/chart
  mkdir -p "$dat"
  local names=("HTTP" "local" "ossmount" "rclone" "s3fs" "Mountpoint")
  local colors=("0x999999" "0x555555" "0x1f77b4" "0x2ca02c" "0xd62728" "0xff7f0e")
  local gp=$dat/chart.gp i=0 id label unit dir ref
  local nrows; nrows=$(peers_rows | wc -l)
  # ROWS: the serve section of bench.sh, one more panel
  # shellcheck disable=SC2153
  local panels=$((nrows + (${#ROWS[@]} > 0 ? 1 : 0)))
  local cols=4 grid_rows=$(((panels + 3) / 4))
  {
    echo "set terminal pngcairo noenhanced size 1800,$((grid_rows * 360)) font 'DejaVu Sans,11'"
    echo "set output '$png'"
    echo "set multiplot layout $grid_rows,$cols title 'ossmount vs rclone (vfs-cache-mode full), s3fs (use_cache), Mountpoint (--cache); same ossmount serve, link ${LINK:-loopback}; medians of $RUNS run(s); $(date -u '+%Y-%m-%d %H:%M UTC')' font ',14'"
    echo "set style fill solid 0.85 border -1"
    echo "set boxwidth 0.7"
    echo "set grid ytics lc rgb '#dddddd'"
    echo "unset key"
    echo "set xtics nomirror scale 0"
    echo "set ytics nomirror"
    echo "set border 3"
  } > "$gp"
  while IFS='|' read -r id label unit dir ref; do
    i=$((i + 1))
    local f=$dat/$id.dat c j=0 v ymax=0
    : > "$f"
    for c in "${COLUMNS_ALL[@]}"; do
      v=$(median_of "$id" "$c")
      if [ -n "$v" ]; then
        printf '"%s" %s %s "%s"\n' "${names[$j]}" "$v" "${colors[$j]}" "$(fmt "$v")" >> "$f"
        ymax=$(awk -v a="$v" -v b="$ymax" 'BEGIN { print (a > b) ? a : b }')
      else
        printf '"%s" 0 %s "n/a"\n' "${names[$j]}" "${colors[$j]}" >> "$f"
      fi
      j=$((j + 1))
    done
    local arrow="higher is better"; [ "$dir" = up ] || arrow="lower is better"
    {
      echo "set title \"$label\" font ',10'"
      echo "set ylabel '$unit ($arrow)'"
      echo "set yrange [0:$(awk -v m="$ymax" 'BEGIN { print (m > 0) ? m * 1.25 : 1 }')]"
      echo "plot '$f' using 0:2:3:xtic(1) with boxes lc rgb variable, '' using 0:2:4 with labels offset 0,0.8 font ',9'"
    } >> "$gp"
  done < <(peers_rows)
  # The serve-throughput section of bench.sh (its ROWS: "label|median|unit|runs").
  if [ ${#ROWS[@]} -gt 0 ]; then
    local f=$dat/serve.dat r lab med unit2 ymax=0
    : > "$f"
    for r in "${ROWS[@]}"; do
      IFS='|' read -r lab med unit2 _ <<< "$r"
      [ "$unit2" = "MB/s" ] || continue # one unit per panel (the CPU row is in the table)
      printf '"%s" %s 0x1f77b4 "%s"\n' "${lab%%:*}" "$med" "$(fmt "$med")" >> "$f"
      ymax=$(awk -v a="$med" -v b="$ymax" 'BEGIN { print (a > b) ? a : b }')
    done
    {
      echo "set title 'GET of the ${SIZE_MIB} MiB object from the page cache (serve section)' font ',10'"
      echo "set ylabel 'MB/s (higher is better)'"
      echo "set yrange [0:$(awk -v m="$ymax" 'BEGIN { print (m > 0) ? m * 1.25 : 1 }')]"
      echo "set xtics font ',8'"
      echo "plot '$f' using 0:2:3:xtic(1) with boxes lc rgb variable, '' using 0:2:4 with labels offset 0,0.8 font ',9'"
    } >> "$gp"
  fi
  echo "unset multiplot" >> "$gp"
  gnuplot "$gp"
}

# Run by run, for the rows whose limit is measured in the same run: the limit, ossmount,
# and their ratio. On a VM whose memory costs drift (see BENCH_SETTLE_S), the spread says
# how far one median ratio can be trusted.
peers_spread() {
  local id label unit dir ref
  echo "| workload | limit | runs of the limit | runs of ossmount | ossmount / limit, run by run |"
  echo "|---|---|---|---|---|"
  while IFS='|' read -r id label unit dir ref; do
    case "$id" in seq_cold | seq_warm | seq_hot | par4) ;; *) continue ;; esac
    awk -F '\t' -v r="$id" -v c="$ref" -v label="$label" '
      $1 == r && $2 == c { lim[$3] = $4; runs[$3] = 1 }
      $1 == r && $2 == "ossmount" { oss[$3] = $4; runs[$3] = 1 }
      END {
        n = 0; for (k in runs) keys[++n] = k
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (keys[j] < keys[i]) { t = keys[i]; keys[i] = keys[j]; keys[j] = t }
        for (i = 1; i <= n; i++) {
          k = keys[i]
          l = l sprintf("%s%.0f", i > 1 ? " " : "", lim[k])
          o = o sprintf("%s%.0f", i > 1 ? " " : "", oss[k])
          q = q sprintf("%s%s", i > 1 ? " " : "", (lim[k] > 0 && k in oss) ? sprintf("%.2f", oss[k] / lim[k]) : "-")
        }
        printf "| %s | %s | %s | %s | %s |\n", label, c, l, o, q
      }' "$PEERS_RAW"
  done < <(peers_rows)
}

peers_report() {
  peers_medians
  {
    echo "# ossmount side by side with rclone, s3fs and Mountpoint: link ${LINK:-loopback}"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), \`scripts/bench.sh ${BENCH_ARGS:-}\`, median of $RUNS run(s) per cell;"
    echo "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r),"
    echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "One \`ossmount serve --anonymous\` on loopback serves every column; its link: ${LINK_JSON:-none (plain loopback)}."
    echo "Versions: $("$BIN" --version 2> /dev/null || echo ossmount) ($(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo '?')),"
    echo "$(rclone version 2> /dev/null | head -1), s3fs $(s3fs --version 2> /dev/null | sed -n 's/.*V\([0-9.]*\).*/\1/p' | head -1), $([ -n "$MOUNT_S3" ] && "$MOUNT_S3" --version 2> /dev/null | head -1 || echo 'no Mountpoint')."
    echo
    peers_table
    echo
    echo "Peak RSS of each mount, per workload (every workload mounts afresh):"
    echo
    peers_rss_table
    echo
    echo "Limit: HTTP = what a good client gets from the same server and link: 16 ranged GETs at"
    echo "once into the same disk for a whole object (aria2c -x16 -s16; one curl where aria2c is"
    echo "missing), curl -o per object for 4 readers, curl -C - to resume after kill -9, as many"
    echo "keep-alive Python clients as the test has threads for small objects (one GET each), one"
    echo "keep-alive client with one ranged GET per random read, and the ListObjectsV2 pages for"
    echo "listings; local = the served file itself (cp, head -c 1, pread, ls -l, ls -lR, find)."
    echo "Warm cp's limit is cp of the served file, page cache dropped before it as well, taken"
    echo "around ossmount's warm copies (tool, local, local, tool; each cell the pair's bytes over its time). cp of a"
    echo "local file is one copy_file_range; out of a FUSE mount it gets EXDEV (Linux 5.19 and"
    echo "later) and falls back to read/write, 128 KiB at a time out of each of the three."
    echo "Cold = fresh mount over an empty cache directory, page cache dropped, then ${BENCH_SETTLE_S} s of"
    echo "waiting before the tool starts (BENCH_SETTLE_S: on a VM with free page reporting the"
    echo "freed memory goes back to the host within 1-2 s and is slower to touch afterwards;"
    echo "waiting puts every cold run in that same state)."
    echo "Bytes fetched = the server's bytes_sent (GET bodies written to sockets)."
    echo "The store (serve) reads its objects from ${STORE_DIR:-\$BENCH_DIR/data}: a real store's disks are not the client's (BENCH_STORE in scripts/bench.sh)."
    echo "Defaults everywhere except rclone --vfs-cache-mode full, s3fs use_cache and Mountpoint --cache${OSSMOUNT_ARGS:+; ossmount with $OSSMOUNT_ARGS}."
    echo
    echo "Run by run (the limit and ossmount of one run are minutes apart, except warm cp's, taken around it):"
    echo
    peers_spread
    if [ -s "$RESULTS/notes.txt" ]; then
      echo
      echo "Notes from this run:"
      echo
      sed 's/^/- /' "$RESULTS/notes.txt"
    fi
    if [ -s "$RESULTS/download.md" ]; then
      echo
      echo "## ossmount download against curl -o"
      cat "$RESULTS/download.md"
    fi
    if [ -s "$RESULTS/serve.md" ]; then
      echo
      echo "## ossmount serve throughput"
      cat "$RESULTS/serve.md"
    fi
  } > "$RESULTS/bench.md"
  peers_chart
  # The mounts' own logs (every mount of this run, appended), for explaining a figure later.
  rm -rf "$RESULTS/logs"
  cp -r "$PEERS_WORK/logs" "$RESULTS/logs"
  cat "$RESULTS/bench.md"
  log "wrote $RESULTS/bench.md, $RESULTS/bench.png, raw figures in $PEERS_RAW"
}
