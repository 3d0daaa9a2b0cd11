# shellcheck shell=bash
# The HTTPS row: a cold cp of the big object through ossmount from a second
# `ossmount serve --tls-cert/--tls-key` (same data, same link), against `curl --cacert` of
# the same object over HTTPS, with each one's CPU seconds per GiB: what TLS costs. The CA
# and the server certificate are made here with openssl, valid for 127.0.0.1 and a day.
# Peers are not measured over HTTPS (rclone, s3fs and Mountpoint each take a private CA
# differently); the row says so.
#
# Sourced by scripts/bench.sh: https_setup starts the server (sets TLS_URL, TLS_PID, BENCH_CA
# stays unset so the plain limits use plain curl); peers.sh calls tool_https once per run.

https_setup() {
  local d=$BENCH_DIR/tls
  mkdir -p "$d"
  if ! command -v openssl > /dev/null; then
    log "no openssl: the HTTPS row is skipped"
    return 0
  fi
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=ossmount bench CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2> /dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$d/server.key" -out "$d/server.csr" 2> /dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$d/ext.cnf"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 1 -extfile "$d/ext.cnf" -out "$d/server.crt" 2> /dev/null
  TLS_CA=$d/ca.pem
  # The control endpoints (stats, faults) are opt-in where serve has --testing-aids.
  local aids=""
  if "$BIN" serve --help 2> /dev/null | grep -q -- '--testing-aids'; then aids=--testing-aids; fi
  # shellcheck disable=SC2086 # a list of options
  "$BIN" serve "$STORE_DIR" --listen 127.0.0.1:0 --anonymous $aids \
    --tls-cert "$d/server.crt" --tls-key "$d/server.key" > "$d/serve.out" 2> "$d/serve.err" &
  TLS_PID=$!
  for _ in $(seq 100); do
    if grep -q "listening on" "$d/serve.out" 2> /dev/null; then break; fi
    sleep 0.1
  done
  TLS_URL=$(sed -n 's/.*listening on \(https:[^ ]*\).*/\1/p' "$d/serve.out" | head -1)
  [ -n "$TLS_URL" ] || { log "TLS serve did not start: $(cat "$d/serve.err")"; TLS_URL=""; return 0; }
  curl -sf --cacert "$TLS_CA" -I "$TLS_URL/$BUCKET/$KEY" > /dev/null
  log "HTTPS serve at $TLS_URL"
}

# Apply the same link as the plain server (JSON body of PUT /_ossmount/faults).
https_link() {
  [ -n "${TLS_URL:-}" ] || return 0
  curl -sf --cacert "$TLS_CA" -X PUT "$TLS_URL/_ossmount/faults" -d "$1" > /dev/null
}

https_teardown() {
  if [ -n "${TLS_PID:-}" ]; then kill "$TLS_PID" 2> /dev/null || true; wait "$TLS_PID" 2> /dev/null || true; TLS_PID=""; fi
}

tool_https() {
  local t0 s cpu
  drop_caches
  rm -f "$OUT/copy"
  local TIMEFORMAT='%U %S'
  t0=$(now)
  cpu=$( { time curl -sf --cacert "$TLS_CA" -o "$OUT/copy" "$TLS_URL/$BUCKET/$KEY" > /dev/null; } 2>&1 )
  s=$(elapsed "$t0")
  record https_cold curl "$(mibps "$BIG_BYTES" "$s")"
  record https_cpu curl "$(echo "$cpu" | awk -v m="$SIZE_MIB" '{ printf "%.2f\n", ($1 + $2) / (m / 1024) }')"
  check_copy "curl over HTTPS"
  rm -f "$OUT/copy"
  drop_caches
  local cache; cache=$(fresh_cache ossmount-https)
  MNT=$PEERS_WORK/mnt-ossmount-https
  mkdir -p "$MNT" "$PEERS_WORK/logs"
  # shellcheck disable=SC2086
  "$BIN" mount "oss://$BUCKET" "$MNT" --endpoint "$TLS_URL" --no-sign-request --ca-bundle "$TLS_CA" \
    --cache-dir "$cache" --foreground --log-file "$PEERS_WORK/logs/ossmount-https.log" ${OSSMOUNT_ARGS:-} \
    2>> "$PEERS_WORK/logs/ossmount-https.log" &
  MOUNT_PID=$!
  LIVE_MOUNTS+=("$MNT")
  LIVE_PIDS+=("$MOUNT_PID")
  local i
  for i in $(seq 300); do
    if mountpoint -q "$MNT"; then break; fi
    sleep 0.05
  done
  mountpoint -q "$MNT" || { note "ossmount over HTTPS did not mount (after $i polls)"; return 0; }
  local c0; c0=$(pid_cpu_s "$MOUNT_PID")
  s=$(timed_cp "$MNT/$KEY")
  record https_cold ossmount "$(mibps "$BIG_BYTES" "$s")"
  record https_cpu ossmount "$(awk -v a="$c0" -v b="$(pid_cpu_s "$MOUNT_PID")" -v m="$SIZE_MIB" 'BEGIN { printf "%.2f\n", (b - a) / (m / 1024) }')"
  check_copy "ossmount cold cp over HTTPS"
  rm -f "$OUT/copy"
  unmount_tool ossmount
}
