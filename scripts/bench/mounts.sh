# shellcheck shell=bash
# Mounting and unmounting the three FUSE clients over the same `ossmount serve`, each in the
# foreground as a child of this shell, so that $MOUNT_PID is the process to sample
# (VmHWM) and to `kill -9`, and nothing has to be found by name.
#
# What each peer needs against `ossmount serve` (anonymous, path style, loopback):
# - rclone: S3 remote, provider Other, path style, no credentials (anonymous), and its
#   default listing (ListObjects V1 for "Other"; serve answers V1 and V2).
#   AWS_CA_BUNDLE must not be set (even for plain http rclone 1.60 then fails with
#   "LoadCustomCABundleError ... unsupported transport"), so it is removed from its env.
# - s3fs: url=, use_path_request_style, public_bucket=1, and its default listing (V1).
# - ossmount: --endpoint, --no-sign-request.
# - Mountpoint for Amazon S3 (`mount-s3`, from MOUNT_S3=PATH or PATH; skipped with a note
#   when absent; AWS ships it as .deb/.rpm, or build awslabs/mountpoint-s3 with
#   `cargo build --release`): --endpoint-url, path style,
#   --no-sign-request, region us-east-1, --read-only, its disk cache (--cache DIR, wiped by
#   it at mount), --maximum-throughput-gbps 10 (what it sizes its parallel GETs from; the
#   oss-like link's 1 GB/s total is 8 Gbit/s). AWS_EC2_METADATA_DISABLED=true so it does not
#   wait for an instance metadata service.
#
# Every tool runs with its defaults (plus the cache options above). For experiments,
# OSSMOUNT_ARGS adds options to ossmount's command line (e.g. "--part-size 1MiB"); the
# report names them.

# shellcheck disable=SC2034 # used by peers.sh
TOOLS=(ossmount rclone s3fs)
MOUNT_S3=${MOUNT_S3:-$(command -v mount-s3 || true)}
if [ -n "$MOUNT_S3" ] && [ -x "$MOUNT_S3" ]; then
  TOOLS+=(mountpoint)
else
  MOUNT_S3=""
fi
if [ -n "${BENCH_TOOLS:-}" ]; then
  # shellcheck disable=SC2206 # a list of names
  _want=($BENCH_TOOLS)
  _have=("${TOOLS[@]}")
  TOOLS=()
  for _t in "${_want[@]}"; do
    for _h in "${_have[@]}"; do [ "$_t" = "$_h" ] && TOOLS+=("$_t"); done
  done
fi
declare -gA PEAK_RSS_KB=()   # per tool, max VmHWM over its mounts in the current run
MOUNT_PID=""
MNT=""
LIVE_MOUNTS=()              # mountpoints to tear down in the trap
LIVE_PIDS=()                # children not yet reaped (mounts, background cp/curl): the
                            # trap kills these; a reaped PID is dropped, since the kernel
                            # may hand its number to someone else's process

forget_pid() {
  local p keep=()
  for p in "${LIVE_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  LIVE_PIDS=("${keep[@]}")
}

# mount_tool TOOL CACHE_DIR -- mounts bucket $BUCKET at $PEERS_WORK/mnt-TOOL; sets MNT and
# MOUNT_PID. Never call it in $(...): the mount must be a child of this shell.
mount_tool() {
  local tool=$1 cache=$2
  MNT=$PEERS_WORK/mnt-$tool
  local logf=$PEERS_WORK/logs/$tool.log
  mkdir -p "$MNT" "$cache" "$PEERS_WORK/logs"
  case $tool in
    ossmount)
      # OSSMOUNT_ARGS is a list of options; its log and its stderr both append to one file.
      # shellcheck disable=SC2086,SC2094
      "$BIN" mount "oss://$BUCKET" "$MNT" --endpoint "$SERVE_URL" --no-sign-request \
        --cache-dir "$cache" --foreground --log-file "$logf" ${OSSMOUNT_ARGS:-} 2>> "$logf" &
      ;;
    rclone)
      # An empty config file, so a user's rclone.conf never changes what we measure; the
      # remote is defined by RCLONE_CONFIG_OSSBENCH_* variables.
      : > "$PEERS_WORK/rclone.conf"
      env -u AWS_CA_BUNDLE \
        RCLONE_CONFIG="$PEERS_WORK/rclone.conf" \
        RCLONE_CONFIG_OSSBENCH_TYPE=s3 \
        RCLONE_CONFIG_OSSBENCH_PROVIDER=Other \
        RCLONE_CONFIG_OSSBENCH_ENDPOINT="$SERVE_URL" \
        RCLONE_CONFIG_OSSBENCH_FORCE_PATH_STYLE=true \
        RCLONE_CONFIG_OSSBENCH_ENV_AUTH=false \
        rclone mount "ossbench:$BUCKET" "$MNT" --read-only \
        --vfs-cache-mode full --cache-dir "$cache" --log-file "$logf" &
      ;;
    s3fs)
      s3fs "$BUCKET" "$MNT" -f -o "url=$SERVE_URL,use_path_request_style,public_bucket=1,ro,use_cache=$cache" \
        >> "$logf" 2>&1 &
      ;;
    mountpoint)
      AWS_EC2_METADATA_DISABLED=true "$MOUNT_S3" "$BUCKET" "$MNT" --endpoint-url "$SERVE_URL" \
        --force-path-style --no-sign-request --region us-east-1 --read-only \
        --maximum-throughput-gbps 10 --cache "$cache" -f >> "$logf" 2>&1 &
      ;;
    *) log "unknown tool $tool"; exit 1 ;;
  esac
  MOUNT_PID=$!
  LIVE_MOUNTS+=("$MNT")
  LIVE_PIDS+=("$MOUNT_PID")
  local i
  for i in $(seq 300); do
    if mountpoint -q "$MNT"; then return 0; fi
    if ! kill -0 "$MOUNT_PID" 2> /dev/null; then break; fi
    sleep 0.05
  done
  log "$tool did not mount at $MNT (after ${i} polls); its log:"
  tail -20 "$logf" >&2
  exit 1
}

# Remember the mount process's peak RSS (VmHWM, KiB) before it goes away.
sample_rss() {
  local tool=$1 kb
  kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$MOUNT_PID/status" 2> /dev/null || true)
  local fn where="?"
  for fn in "${FUNCNAME[@]}"; do case $fn in tool_*) where=$fn; break ;; esac; done
  log "  ($tool peak RSS of this mount so far: ${kb:-?} KiB, in $where${RSS_TAG:+ $RSS_TAG})"
  if [ -n "$kb" ] && [ "$kb" -gt "${PEAK_RSS_KB[$tool]:-0}" ]; then PEAK_RSS_KB[$tool]=$kb; fi
  # Every workload mounts afresh, so this is the workload's own peak: one row per workload
  # in the RSS table (report.sh), RSS_TAG telling apart variants of one function.
  if [ -n "$kb" ]; then record "rss:${where#tool_}${RSS_TAG:-}" "$tool" "$(awk -v k="$kb" 'BEGIN { printf "%.0f\n", k / 1024 }')"; fi
}

# Wait for PID (a child of this shell) to exit; kill -9 it after 30 s. Polls /proc rather
# than running a watchdog in the background, and kills only a process whose parent is
# still this shell (a PID, once reaped, may be handed to someone else's process).
reap() {
  local pid=$1 state ppid _
  for _ in $(seq 300); do
    read -r _ _ state ppid _ 2> /dev/null < "/proc/$pid/stat" || break
    if [ "$state" = Z ] || [ "$ppid" != $$ ]; then break; fi
    sleep 0.1
  done
  if read -r _ _ state ppid _ 2> /dev/null < "/proc/$pid/stat" && [ "$ppid" = $$ ] && [ "$state" != Z ]; then
    log "process $pid did not exit within 30 s of unmounting; kill -9"
    kill -9 "$pid" 2> /dev/null || true
  fi
  wait "$pid" 2> /dev/null || true
  forget_pid "$pid"
}

unmount_tool() {
  local tool=$1
  sample_rss "$tool"
  fusermount3 -u "$MNT" 2> /dev/null || umount "$MNT" 2> /dev/null || fusermount3 -uz "$MNT" 2> /dev/null || true
  reap "$MOUNT_PID"
}

# A mount whose process was killed: the kernel still has the mountpoint
# ("Transport endpoint is not connected") until it is detached.
detach_dead_mount() {
  fusermount3 -uz "$MNT" 2> /dev/null || umount -l "$MNT" 2> /dev/null || true
}

# The trap's share: every mount this run made, every mount process it started.
peers_teardown() {
  local m p
  for m in "${LIVE_MOUNTS[@]}"; do
    if grep -qs " $m " /proc/mounts; then
      fusermount3 -u "$m" 2> /dev/null || fusermount3 -uz "$m" 2> /dev/null || umount -l "$m" 2> /dev/null || true
    fi
  done
  for p in "${LIVE_PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  sleep 0.5
  for p in "${LIVE_PIDS[@]}"; do kill -9 "$p" 2> /dev/null || true; done
}
