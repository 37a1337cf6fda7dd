#!/usr/bin/env bash
# benches/soak.sh - soak test of charte-proxy on loopback: steady HTTP, CONNECT and bumped
# (TLS-inspected) load for DURATION seconds while the policy is rewritten every
# RELOAD_EVERY seconds, valid and invalid in turn. One command:
#
#   benches/soak.sh                        # builds the release binary, 10-minute soak
#   DURATION=60 benches/soak.sh            # quick run
#   CHARTE_BIN=target/release/charte-proxy DURATION=60 benches/soak.sh
#
# It installs what it needs from Debian packages when missing (nginx-light or nginx, wrk,
# curl, openssl, python3, iproute2, procps; as root or through sudo), builds the proxy
# (`cargo build --release --locked`) unless CHARTE_BIN is given, then starts, on 127.0.0.1
# only, on ports chosen free at run time:
#   * an nginx origin: /1k (1 KiB) and /blob (CONNECT_MIB MiB) over HTTP and HTTPS, with a
#     certificate for *.soak.test signed by a throw-away test CA made with openssl;
#   * charte-proxy with TLS inspection on (its CA made in its data dir on first start), the
#     soak policy (benches/soak/policy.yaml.in: the shipped policy's shape and categories,
#     internal_sites [127.0.0.0/8], tunnel.soak.test in no_inspect), names pinned with
#     --host NAME=127.0.0.1, the test CA trusted upstream (--upstream-ca).
# For DURATION seconds, at once:
#   1. HTTP: wrk -t1 -cHTTP_CONNS keep-alive GET of 1 KiB through the proxy (absolute-form,
#      origin.soak.test), each connection pausing HTTP_DELAY_MS between requests;
#   2. CONNECT: CONNECT_LOOPS loops of `curl -p` downloading /blob over HTTPS through a plain
#      tunnel (tunnel.soak.test, no_inspect: relayed as bytes, nginx's certificate);
#   3. bumped HTTPS: a loop of curl runs, each BUMP_BATCH GETs of 1 KiB in one inspected
#      tunnel to origin.soak.test (certificate minted by the proxy's CA), alternately
#      HTTP/1.1 and HTTP/2, BUMP_PAUSE s apart;
#   4. every RELOAD_EVERY s the policy file is replaced (rename) by, in turn, valid B (adds
#      a rule blocking toggle.soak.test), an invalid version (a rule naming an unknown
#      category), valid A (without that rule), the invalid one again, ...; then SIGHUP
#      (the proxy's file watcher reloads too). /health must show, within RELOAD_TIMEOUT s,
#      a valid version in force (generation up, not stale, its rule count) or an invalid
#      one refused (stale, generation and rule count unchanged, and still so at the next
#      change); a probe GET http://toggle.soak.test/ must give 403 under B, 200 under A.
# Every request of 1-3 goes to a name the policy allows: any failure (curl error, status
# not 2xx, short body, wrk socket error or timeout) counts. The proxy's RSS (VmRSS) and
# open descriptors (/proc/PID/fd) are sampled idle before the load, after WARMUP s, every
# SAMPLE_EVERY s, near the end of the load, and at the end once the load stopped and the
# proxy drained (its HTTP connections and tunnels back to their idle values and its
# descriptors back within FD_SLACK of the idle count, polled until DRAIN_TIMEOUT s: the
# pooled upstream connections close after 60 s idle; raw/drain.tsv has the timeline).
# With ROTATE_TRACE=1 the trace is rotated (rename + SIGUSR1) at each sample and the old
# file deleted, so that a long soak does not fill the disk (and a descriptor kept on a
# deleted trace would show).
# Prints a markdown summary (also OUT_DIR/summary.md) ending in a verdict: PASS, or FAIL
# (exit 1) when an allowed request failed, a reload check failed, the proxy died or did
# not drain, RSS at the end (drained, or at the last sample under load) exceeds the start
# sample by more than RSS_GROWTH_PCT % + RSS_GROWTH_MIB MiB, or the descriptors did not
# come back to the idle count + FD_SLACK. Raw outputs in OUT_DIR/raw.
# Everything it starts is stopped on exit (trap), on Ctrl-C and on failure.
#
# Environment knobs (defaults):
#   DURATION=600        seconds of load
#   WARMUP=60           seconds of load before the start sample (DURATION/3 when that is
#                       less): the first reloads grow the heap before it levels off
#   SAMPLE_EVERY=60     seconds between RSS/descriptor samples (and trace rotations)
#   RELOAD_EVERY=10     seconds between policy rewrites (+ SIGHUP)
#   RELOAD_TIMEOUT=8    seconds a reload has to show in /health
#   HTTP_CONNS=16       wrk keep-alive connections (wrk -t1)
#   HTTP_DELAY_MS=10    pause of each wrk connection between two requests (0: flat out)
#   HTTP_TIMEOUT=30     wrk --timeout, seconds
#   CONNECT_LOOPS=2     concurrent CONNECT download loops
#   CONNECT_MIB=4       size of each CONNECT download
#   CONNECT_RATE=4M     curl --limit-rate of each download (0: unlimited)
#   BUMP_BATCH=10       requests per bumped tunnel (one curl run)
#   BUMP_PAUSE=0.2      seconds between two bumped curl runs
#   DRAIN_TIMEOUT=240   seconds allowed for connections and descriptors to come back at the end
#   FD_SLACK=4          descriptors allowed above the idle count at the end
#   RSS_GROWTH_PCT=20 RSS_GROWTH_MIB=10   allowed RSS growth over the start sample
#   ROTATE_TRACE=1      rotate and delete the trace at each sample (0: keep one trace file)
#   CHARTE_BIN=path     use this binary instead of building (cargo build --release --locked)
#   NGINX_WORKERS=1     nginx worker processes
#   HTTP_PORT=0 HTTPS_PORT=0 CHARTE_PORT=0   loopback ports (0: a free one chosen at run time)
#   OUT_DIR=${TMPDIR:-/tmp}/bench-out/soak-<stamp>   raw outputs and summary.md
#   KEEP_TMP=0          1: keep the temp dir (configs, data dir, trace) after the run
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
SOAK_DIR=$SCRIPT_DIR/soak

DURATION=${DURATION:-600}
WARMUP=${WARMUP:-}
if [[ -z "$WARMUP" && "$DURATION" =~ ^[0-9]+$ ]]; then WARMUP=$(( DURATION / 3 < 60 ? DURATION / 3 : 60 )); fi
SAMPLE_EVERY=${SAMPLE_EVERY:-60}
RELOAD_EVERY=${RELOAD_EVERY:-10}
RELOAD_TIMEOUT=${RELOAD_TIMEOUT:-8}
HTTP_CONNS=${HTTP_CONNS:-16}
HTTP_DELAY_MS=${HTTP_DELAY_MS:-10}
HTTP_TIMEOUT=${HTTP_TIMEOUT:-30}
CONNECT_LOOPS=${CONNECT_LOOPS:-2}
CONNECT_MIB=${CONNECT_MIB:-4}
CONNECT_RATE=${CONNECT_RATE:-4M}
BUMP_BATCH=${BUMP_BATCH:-10}
BUMP_PAUSE=${BUMP_PAUSE:-0.2}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-240}
FD_SLACK=${FD_SLACK:-4}
RSS_GROWTH_PCT=${RSS_GROWTH_PCT:-20}
RSS_GROWTH_MIB=${RSS_GROWTH_MIB:-10}
ROTATE_TRACE=${ROTATE_TRACE:-1}
CHARTE_BIN=${CHARTE_BIN:-}
NGINX_WORKERS=${NGINX_WORKERS:-1}
HTTP_PORT=${HTTP_PORT:-0}
HTTPS_PORT=${HTTPS_PORT:-0}
CHARTE_PORT=${CHARTE_PORT:-0}
KEEP_TMP=${KEEP_TMP:-0}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT_DIR=${OUT_DIR:-${TMPDIR:-/tmp}/bench-out/soak-$STAMP}

ORIGIN=origin.soak.test      # plain HTTP and bumped HTTPS
TUNNEL=tunnel.soak.test      # no_inspect: CONNECT relayed as bytes
TOGGLE=toggle.soak.test      # blocked by valid B only: the probe of which version is in force

declare -A PID=()   # name -> pid of a process this script started
STARTED=()          # pids in start order (for cleanup)
TMP=""
NOTES=()            # lines for the summary's notes
CHECKS=()           # "ok|FAIL text" lines for the verdict

# never let a proxy variable redirect our own clients
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
export PATH="$PATH:/usr/sbin:/sbin"

# progress goes to the script's own stderr (fd 3), even from a trap that fires while a
# client's output is redirected to a file
exec 3>&2
log() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*" >&3; }
die() { log "FATAL: $*"; exit 1; }

# descendants, stop_pid, port_busy, wait_port, launch
source "$(dirname "${BASH_SOURCE[0]}")/lib/procs.sh"

cleanup() {
  local rc=$? i
  set +e
  trap - EXIT INT TERM
  for ((i=${#STARTED[@]}-1; i>=0; i--)); do stop_pid "${STARTED[i]}"; done
  if [[ -n "$TMP" && -d "$TMP" ]]; then
    if [[ "$KEEP_TMP" == 1 ]]; then log "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
  fi
  [[ $rc -ne 0 ]] && log "exited with status $rc (every process it started is stopped)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

status_kb() { # field pid -> /proc/PID/status FIELD (kB, or the count for Threads)
  awk -v f="$1:" '$1==f{print $2}' "/proc/$2/status" 2>/dev/null || true
}
fd_count() { local n; n=$(ls "/proc/$1/fd" 2>/dev/null | wc -l) || true; echo "${n:-NA}"; }
mib() { awk -v k="$1" 'BEGIN{ if (k==""||k=="NA") print "NA"; else printf "%.1f", k/1024 }'; }
now_s() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN{printf "%.1f", b-a}'; }
check() { # ok|FAIL text
  CHECKS+=("$1 $2")
  [[ "$1" == ok ]] || log "check FAILED: $2"
}

# ---------------------------------------------------------------- packages
SUDO=()
if [[ "$(id -u)" != 0 ]]; then SUDO=(sudo); fi
need=()
for pair in wrk:wrk curl:curl openssl:openssl python3:python3 ss:iproute2 ps:procps; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
need_nginx=0
command -v nginx >/dev/null 2>&1 || need_nginx=1
if [[ ${#need[@]} -gt 0 || $need_nginx == 1 ]]; then
  log "installing Debian packages: ${need[*]} $([[ $need_nginx == 1 ]] && echo 'nginx-light (or nginx)')"
  "${SUDO[@]}" apt-get update -qq
  if [[ ${#need[@]} -gt 0 ]]; then
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  if [[ $need_nginx == 1 ]]; then
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1 \
      || DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends nginx >/dev/null
  fi
fi
command -v nginx >/dev/null 2>&1 || die "nginx not found after installing it"

# ---------------------------------------------------------------- preflight
for v in DURATION WARMUP SAMPLE_EVERY RELOAD_EVERY RELOAD_TIMEOUT HTTP_CONNS HTTP_DELAY_MS HTTP_TIMEOUT CONNECT_LOOPS CONNECT_MIB \
         BUMP_BATCH DRAIN_TIMEOUT FD_SLACK RSS_GROWTH_PCT RSS_GROWTH_MIB NGINX_WORKERS HTTP_PORT HTTPS_PORT CHARTE_PORT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
[[ "$BUMP_PAUSE" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BUMP_PAUSE must be a number of seconds, got '$BUMP_PAUSE'"
[[ "$DURATION" -ge 30 ]] || die "DURATION must be at least 30 s"
[[ "$WARMUP" -lt "$DURATION" ]] || die "WARMUP ($WARMUP) must be shorter than DURATION ($DURATION)"
[[ "$RELOAD_EVERY" -ge 2 && "$SAMPLE_EVERY" -ge 10 ]] || die "RELOAD_EVERY must be at least 2 and SAMPLE_EVERY at least 10"
[[ "$CONNECT_MIB" -ge 1 && "$BUMP_BATCH" -ge 1 && "$HTTP_CONNS" -ge 1 ]] || die "CONNECT_MIB, BUMP_BATCH and HTTP_CONNS must be at least 1"
[[ "$CONNECT_RATE" =~ ^[0-9]+[kKmMgG]?$ ]] || die "CONNECT_RATE must be like 4M, 500K or 0, got '$CONNECT_RATE'"
# free loopback ports for what was left at 0 (held together so that they differ)
read -r -a free < <(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')
[[ "$HTTP_PORT" == 0 ]] && HTTP_PORT=${free[0]}
[[ "$HTTPS_PORT" == 0 ]] && HTTPS_PORT=${free[1]}
[[ "$CHARTE_PORT" == 0 ]] && CHARTE_PORT=${free[2]}
for p in "$HTTP_PORT" "$HTTPS_PORT" "$CHARTE_PORT"; do port_busy "$p" && die "port $p already in use (set HTTP_PORT/HTTPS_PORT/CHARTE_PORT)"; done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- binary
if [[ -z "$CHARTE_BIN" ]]; then
  command -v cargo >/dev/null || die "cargo not found: install Rust, or give CHARTE_BIN=path/to/charte-proxy"
  log "building: cargo build --release --locked (in $REPO)"
  (cd "$REPO" && cargo build --release --locked --quiet) || die "cargo build --release --locked failed"
  CHARTE_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/charte-proxy
fi
[[ -x "$CHARTE_BIN" ]] || die "not an executable: $CHARTE_BIN"
CHARTE_VERSION=$("$CHARTE_BIN" --version 2>/dev/null || echo 'version unknown')
BIN_NOTE="$CHARTE_BIN ($CHARTE_VERSION, built $(date -u -r "$CHARTE_BIN" '+%Y-%m-%d %H:%M UTC'))"
HEAD_NOTE=$(git -C "$REPO" log -1 --format='%h %cd' --date=format:'%Y-%m-%d %H:%M' 2>/dev/null || echo unknown)
log "binary $BIN_NOTE; repo HEAD $HEAD_NOTE"

mkdir -p "$OUT_DIR" "${TMPDIR:-/tmp}/bench-tmp"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-tmp/soak-XXXXXX")
chmod 755 "$TMP"
RAW=$OUT_DIR/raw
mkdir -p "$RAW"
log "temp dir $TMP; raw output -> $OUT_DIR"

# ---------------------------------------------------------------- certificates and origin
mkdir -p "$TMP/pki" "$TMP/www" "$TMP/nginx/tmp"
(
  cd "$TMP/pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
    -days 2 -subj "/CN=charte soak test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout origin.key -out origin.csr \
    -subj "/CN=$ORIGIN"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:*.soak.test,DNS:soak.test,IP:127.0.0.1\n' >ext.cnf
  openssl x509 -req -in origin.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out origin.pem
) >"$TMP/pki/openssl.log" 2>&1 || { cat "$TMP/pki/openssl.log" >&2; die "openssl failed"; }
TEST_CA=$TMP/pki/ca.pem
BLOB_BYTES=$((CONNECT_MIB * 1024 * 1024))
head -c 1024 /dev/urandom >"$TMP/www/1k"
head -c "$BLOB_BYTES" /dev/urandom >"$TMP/www/blob"
chmod 755 "$TMP/www"; chmod 644 "$TMP/www"/*
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes $NGINX_WORKERS;
worker_rlimit_nofile 8192;
daemon off;
master_process on;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  types { }
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 300s;
  keepalive_requests 10000000;
  client_header_timeout 300s;
  client_body_temp_path $TMP/nginx/tmp/body;
  proxy_temp_path $TMP/nginx/tmp/proxy;
  fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
  uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
  scgi_temp_path $TMP/nginx/tmp/scgi;
  server {
    listen 127.0.0.1:$HTTP_PORT;
    root $TMP/www;
    location / { }
  }
  server {
    listen 127.0.0.1:$HTTPS_PORT ssl;
    http2 on;
    ssl_certificate $TMP/pki/origin.pem;
    ssl_certificate_key $TMP/pki/origin.key;
    root $TMP/www;
    location / { }
  }
}
EOF
# `http2 on;` needs nginx 1.25.1; older ones take `listen ... ssl http2;`
if ! nginx -t -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" >"$TMP/nginx/test.log" 2>&1; then
  sed -i -e '/http2 on;/d' -e "s|listen 127.0.0.1:$HTTPS_PORT ssl;|listen 127.0.0.1:$HTTPS_PORT ssl http2;|" "$TMP/nginx/nginx.conf"
  nginx -t -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" >"$TMP/nginx/test.log" 2>&1 \
    || { cat "$TMP/nginx/test.log" >&2; die "nginx refuses its configuration"; }
fi
launch nginx "$TMP/nginx/stderr.log" nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"
if ! { wait_port "$HTTP_PORT" "${PID[nginx]}" && wait_port "$HTTPS_PORT" "${PID[nginx]}"; }; then
  cat "$TMP/nginx/stderr.log" "$TMP/nginx/error.log" >&2 || true; die "nginx did not start"
fi
log "nginx pid ${PID[nginx]} on 127.0.0.1:$HTTP_PORT (HTTP) and :$HTTPS_PORT (HTTPS)"

# ---------------------------------------------------------------- policy versions
C=$TMP/charte
mkdir -p "$C/data" "$C/policy" "$C/variants" "$C/staging" "$C/categories"
cp -r "$REPO/categories/charte" "$REPO/categories/ut1" "$C/categories/"
cp -r "$REPO/policies/lists" "$C/lists"
cat >"$TMP/rule-toggle.yaml" <<EOF
  - id: soak-toggle
    description: Written by benches/soak.sh in valid version B only
    domains: [$TOGGLE]
    action: block
    reason: "Soak probe: blocked in version B"
EOF
cat >"$TMP/rule-invalid.yaml" <<EOF
  - id: soak-invalid
    description: Written by benches/soak.sh in the invalid version
    categories: [soak-no-such-category]
    action: block
    reason: "Soak: this category does not exist, check refuses the policy"
EOF
variant() { # template rules-file|"" -> policy on stdout
  awk -v f="$2" '/@SOAK_RULES@/ { if (f != "") { while ((getline l < f) > 0) print l } next } { print }' "$1"
}
variant "$SOAK_DIR/policy.yaml.in" "" >"$C/variants/A.yaml"
variant "$SOAK_DIR/policy.yaml.in" "$TMP/rule-toggle.yaml" >"$C/variants/B.yaml"
variant "$SOAK_DIR/policy.yaml.in" "$TMP/rule-invalid.yaml" >"$C/variants/invalid.yaml"
declare -A RULES=()
for v in A B; do
  "$CHARTE_BIN" check --policy "$C/variants/$v.yaml" >"$RAW/check-$v.txt" 2>&1 \
    || { cat "$RAW/check-$v.txt" >&2; die "soak policy version $v does not pass check"; }
  RULES[$v]=$(grep -c '^  - id:' "$C/variants/$v.yaml")
done
rc=0; "$CHARTE_BIN" check --policy "$C/variants/invalid.yaml" >"$RAW/check-invalid.txt" 2>&1 || rc=$?
[[ $rc == 2 ]] || { cat "$RAW/check-invalid.txt" >&2; die "the invalid soak policy should fail check with status 2, got $rc"; }
[[ "${RULES[B]}" == $(( RULES[A] + 1 )) ]] || die "rule counts of A (${RULES[A]}) and B (${RULES[B]}) should differ by one"
for u in "http://$ORIGIN/" "https://$ORIGIN/" "https://$TUNNEL/" "http://$TOGGLE/"; do
  for v in A B; do
    "$CHARTE_BIN" explain --json --policy "$C/variants/$v.yaml" --ip 127.0.0.1 "$u" >"$TMP/explain.json" 2>>"$RAW/explain.err" || true
    echo "$v $u $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("action"), d.get("inspection"), d.get("reason_code"))' "$TMP/explain.json" 2>/dev/null || echo '? ? ?')"
  done
done >"$RAW/explain.txt"
want_explain="A http://$ORIGIN/ allow
B http://$ORIGIN/ allow
A https://$ORIGIN/ allow inspect
B https://$ORIGIN/ allow inspect
A https://$TUNNEL/ allow tunnel
B https://$TUNNEL/ allow tunnel
A http://$TOGGLE/ allow
B http://$TOGGLE/ block"
while read -r v u a i; do
  got=$(awk -v v="$v" -v u="$u" '$1==v && $2==u {print $3, $4}' "$RAW/explain.txt")
  [[ "$got" == "$a${i:+ $i}"* ]] || { cat "$RAW/explain.txt" >&2; die "explain: $v $u gave '$got', want '$a${i:+ $i}'"; }
done <<<"$want_explain"
cp "$C/variants/A.yaml" "$C/policy/soak.yaml"
POLICY=$C/policy/soak.yaml

# ---------------------------------------------------------------- charte-proxy
log "starting charte-proxy (policy version A, ${RULES[A]} rules; B has ${RULES[B]})"
launch charte "$C/stderr.log" "$CHARTE_BIN" serve --policy "$POLICY" \
  --listen "127.0.0.1:$CHARTE_PORT" --portal-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --data-dir "$C/data" --no-reverse-dns --connect-port "$HTTPS_PORT" --upstream-ca "$TEST_CA" \
  --host "$ORIGIN=127.0.0.1" --host "$TUNNEL=127.0.0.1" --host "$TOGGLE=127.0.0.1"
P=${PID[charte]}
ADMIN=""
for _ in $(seq 600); do
  ADMIN=$(grep -o 'admin=[^ ]*' "$C/stderr.log" 2>/dev/null | head -n1 | cut -d= -f2 || true)
  [[ -n "$ADMIN" ]] && break
  kill -0 "$P" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$ADMIN" ]] || { tail -n 30 "$C/stderr.log" >&2; die "charte-proxy did not print its listening line within 60 s"; }
PROXY=127.0.0.1:$CHARTE_PORT
PROXY_CA=$C/data/ca/ca.pem
log "charte-proxy pid $P on $PROXY, admin $ADMIN"

health() { # -> "generation stale rules" from /health (NA NA NA when it does not answer)
  if ! curl -s --max-time 5 "http://$ADMIN/health" >"$TMP/health.json" 2>/dev/null; then echo "NA NA NA"; return; fi
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["generation"], str(d["stale"]).lower(), d["rules"])' \
    "$TMP/health.json" 2>/dev/null || echo "NA NA NA"
}
metrics_to() { curl -s --max-time 10 "http://$ADMIN/metrics" >"$1" 2>/dev/null || : >"$1"; }
mval() { # file name-with-labels-prefix -> sum of matching series (NA if none)
  awk -v m="$2" 'index($0, m)==1 {s+=$NF; f=1} END{if(f) printf "%.15g\n", s; else print "NA"}' "$1"
}
proxy_alive() { kill -0 "$P" 2>/dev/null; }

# ---------------------------------------------------------------- idle baseline
metrics_to "$RAW/metrics-idle.txt"
curl -s --max-time 10 "http://$ADMIN/health" >"$RAW/health-idle.json" || true
BASE_ACTIVE=$(mval "$RAW/metrics-idle.txt" 'charte_active_connections{listener="proxy"')
BASE_TUNNELS=$(mval "$RAW/metrics-idle.txt" 'charte_tunnels_active')
FD_IDLE=$(fd_count "$P")
RSS_IDLE=$(status_kb VmRSS "$P")
ls -l "/proc/$P/fd" >"$RAW/fds-idle.txt" 2>&1 || true
[[ "$BASE_ACTIVE" != NA && "$BASE_TUNNELS" != NA ]] || die "/metrics lacks charte_active_connections{listener=\"proxy\"} or charte_tunnels_active"
log "idle: RSS $(mib "$RSS_IDLE") MiB, $FD_IDLE descriptors, proxy connections $BASE_ACTIVE, tunnels $BASE_TUNNELS"

# ---------------------------------------------------------------- smoke tests
px=(--proxy "http://$PROXY")
probe() { curl -s -o /dev/null --max-time 20 -w '%{http_code}' "${px[@]}" "http://$TOGGLE:$HTTP_PORT/1k" 2>/dev/null || true; }
out=$(curl -s -o /dev/null --max-time 20 -w '%{http_code} %{size_download}' "${px[@]}" "http://$ORIGIN:$HTTP_PORT/1k" || true)
[[ "$out" == "200 1024" ]] || die "smoke: HTTP 1 KiB through the proxy gave '$out'"
# only the test CA trusted: the tunnel must carry nginx's own certificate (not bumped)
out=$(curl -s -p -o /dev/null --max-time 20 --cacert "$TEST_CA" -w '%{http_code} %{size_download}' "${px[@]}" "https://$TUNNEL:$HTTPS_PORT/1k" || true)
[[ "$out" == "200 1024" ]] || die "smoke: CONNECT (no_inspect) 1 KiB gave '$out'"
# only the proxy's CA trusted: the origin name must be bumped
out=$(curl -s -o /dev/null --max-time 20 --cacert "$PROXY_CA" -w '%{http_code} %{size_download}' "${px[@]}" "https://$ORIGIN:$HTTPS_PORT/1k" || true)
[[ "$out" == "200 1024" ]] || die "smoke: bumped HTTPS 1 KiB gave '$out' (is $PROXY_CA the CA that signs inspected sites?)"
out=$(curl -s -o /dev/null --max-time 20 --http2 --cacert "$PROXY_CA" -w '%{http_code} %{size_download} %{http_version}' "${px[@]}" "https://$ORIGIN:$HTTPS_PORT/1k" || true)
[[ "$out" == "200 1024 2" ]] || NOTES+=("bumped HTTP/2 smoke test gave '$out' (want '200 1024 2'): the HTTP/2 half of the bumped loop may not be HTTP/2")
out=$(probe)
[[ "$out" == 200 ]] || die "smoke: probe $TOGGLE under version A gave '$out', want 200"
log "smoke tests passed (HTTP, CONNECT tunnel, bumped HTTP/1.1 and HTTP/2, probe)"

# ---------------------------------------------------------------- load
T0=$EPOCHSECONDS
END=$((T0 + DURATION))

connect_loop() { # i -> one line a download on stdout
  local rc out errf=$TMP/connect-$1.err rate=()
  [[ "$CONNECT_RATE" != 0 ]] && rate=(--limit-rate "$CONNECT_RATE")
  while (( EPOCHSECONDS < END )); do
    rc=0
    out=$(curl -sS -p "${px[@]}" --cacert "$TEST_CA" -o /dev/null --max-time 120 "${rate[@]}" \
      -w '%{http_code} %{size_download}' "https://$TUNNEL:$HTTPS_PORT/blob" 2>"$errf") || rc=$?
    if [[ $rc == 0 && "$out" == "200 $BLOB_BYTES" ]]; then
      echo "$EPOCHSECONDS ok"
    else
      echo "$EPOCHSECONDS FAIL rc=$rc got='$out' err='$(head -c 300 "$errf" | tr '\n' ' ')'"
    fi
  done
}

bump_loop() { # -> one line a curl run on stdout: time proto ok= fail= [h2=]
  local rc out ok n=0 proto h2 errf=$TMP/bump.err urls=() i
  for ((i=0; i<BUMP_BATCH; i++)); do urls+=(-o /dev/null "https://$ORIGIN:$HTTPS_PORT/1k"); done
  while (( EPOCHSECONDS < END )); do
    n=$((n + 1))
    if (( n % 2 )); then proto=http1.1; else proto=http2; fi
    rc=0
    out=$(curl -sS "--$proto" "${px[@]}" --cacert "$PROXY_CA" --max-time 60 \
      -w '%{http_code} %{size_download} %{http_version}\n' "${urls[@]}" 2>"$errf") || rc=$?
    ok=$(grep -c '^200 1024 ' <<<"$out" || true)
    h2=$(grep -c '^200 1024 2$' <<<"$out" || true)
    if [[ $ok == "$BUMP_BATCH" ]]; then
      echo "$EPOCHSECONDS $proto ok=$ok fail=0 h2=$h2"
    else
      echo "$EPOCHSECONDS $proto ok=$ok fail=$((BUMP_BATCH - ok)) h2=$h2 rc=$rc got='$(tr '\n' ',' <<<"$out")' err='$(head -c 300 "$errf" | tr '\n' ' ')'"
    fi
    sleep "$BUMP_PAUSE"
  done
}

connect_counts() { # -> "ok fail"
  cat "$RAW"/connect-*.log 2>/dev/null | awk '$2=="ok"{o++} $2=="FAIL"{f++} END{print o+0, f+0}'
}
bump_counts() { # -> "ok fail h2 runs"
  awk '{for (i=3;i<=5;i++){split($i,kv,"="); v[kv[1]]+=kv[2]}; r++} END{print v["ok"]+0, v["fail"]+0, v["h2"]+0, r+0}' "$RAW/bump.log" 2>/dev/null || echo "0 0 0 0"
}

log "load for ${DURATION}s: wrk -c$HTTP_CONNS (${HTTP_DELAY_MS} ms pauses), $CONNECT_LOOPS CONNECT loops ($CONNECT_MIB MiB at ${CONNECT_RATE}/s), bumped runs of $BUMP_BATCH; policy rewrite every ${RELOAD_EVERY}s"
WRK_ABS_URL="http://$ORIGIN:$HTTP_PORT/1k" WRK_HOST="$ORIGIN:$HTTP_PORT" WRK_DELAY_MS=$HTTP_DELAY_MS WRK_BODY_BYTES=1024 \
  launch wrk "$RAW/wrk.txt" timeout $((DURATION + 120)) wrk -t1 -c"$HTTP_CONNS" -d"${DURATION}s" --timeout "${HTTP_TIMEOUT}s" \
  --latency -s "$SOAK_DIR/wrk.lua" "http://$PROXY/"
LOADERS=("${PID[wrk]}")
for ((i=1; i<=CONNECT_LOOPS; i++)); do launch "connect$i" "$RAW/connect-$i.log" connect_loop "$i"; LOADERS+=("${PID[connect$i]}"); done
launch bump "$RAW/bump.log" bump_loop
LOADERS+=("${PID[bump]}")

# ---------------------------------------------------------------- samples
SAMPLES=$OUT_DIR/samples.tsv
printf 'label\tt_s\trss_kb\thwm_kb\tfds\tthreads\thttp_conns\ttunnels\tgeneration\tstale\tproxy_requests\tclient_failures\n' >"$SAMPLES"
TRACE_LINES=0
TRACE_ROTATIONS=0
sample() { # label
  local m=$TMP/metrics-sample.txt cf cok cfail bok bfail
  metrics_to "$m"
  read -r cok cfail < <(connect_counts)
  read -r bok bfail _ < <(bump_counts)
  cf=$((cfail + bfail))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$(( EPOCHSECONDS - T0 ))" \
    "$(status_kb VmRSS "$P")" "$(status_kb VmHWM "$P")" "$(fd_count "$P")" "$(status_kb Threads "$P")" \
    "$(mval "$m" 'charte_active_connections{listener="proxy"')" "$(mval "$m" 'charte_tunnels_active')" \
    "$(mval "$m" 'charte_policy_generation')" "$(mval "$m" 'charte_policy_stale')" \
    "$(mval "$m" 'charte_requests_total')" "$cf" >>"$SAMPLES"
  log "sample $1: $(tail -n1 "$SAMPLES" | awk -F'\t' '{printf "RSS %.1f MiB, %s fds, %s threads, %s HTTP conns, %s tunnels, generation %s, %s proxy requests, %s CONNECT/bumped failures", $3/1024, $5, $6, $7, $8, $9, $11, $12}')"
}
rotate_trace() { # rename + SIGUSR1; wait for the new file; count and delete the old one
  local tr=$C/data/trace.log old=$C/data/trace.log.soak-old i
  [[ "$ROTATE_TRACE" == 1 && -f "$tr" ]] || return 0
  mv "$tr" "$old"
  kill -USR1 "$P" 2>/dev/null || return 0
  for i in $(seq 100); do [[ -f "$tr" ]] && break; sleep 0.1; done
  [[ -f "$tr" ]] || NOTES+=("trace rotation at $(( EPOCHSECONDS - T0 )) s: DATA/trace.log did not reappear within 10 s of SIGUSR1")
  TRACE_LINES=$((TRACE_LINES + $(wc -l <"$old")))
  TRACE_ROTATIONS=$((TRACE_ROTATIONS + 1))
  rm -f "$old"
}
# when: the start sample after WARMUP, then every SAMPLE_EVERY s, and one near the end
S_AT=("$WARMUP"); S_LABEL=(start)
for ((t=SAMPLE_EVERY; t<DURATION-5; t+=SAMPLE_EVERY)); do
  if [[ $t -gt $WARMUP ]]; then S_AT+=("$t"); S_LABEL+=("t+${t}s"); fi
done
if [[ $((DURATION - 5)) -gt "${S_AT[-1]}" ]]; then S_AT+=($((DURATION - 5))); S_LABEL+=(load-end); fi

# ---------------------------------------------------------------- reloads
RELOADS=$OUT_DIR/reloads.tsv
printf 'cycle\tt_s\twritten\tin_force\tgen_before\tgen_after\tstale\trules\twait_s\tprobe\tresult\trss_kb_before\trss_kb_after\n' >"$RELOADS"
IN_FORCE=A          # version in force (the last valid one)
PREV_KIND=""        # kind of the previous cycle
PREV_GEN=""         # generation read when the previous cycle was checked
VALID_N=0; VALID_OK=0; INVALID_N=0; INVALID_OK=0; PROBE_OK=0; PROBE_N=0
RELOAD_FAILS=()
reload_cycle() { # cycle number
  local n=$1 kind ver gen0 stale0 rules0 gen stale rules t0 ok="" code want res=ok why="" rss0
  rss0=$(status_kb VmRSS "$P")
  read -r gen0 stale0 rules0 < <(health)
  if [[ "$PREV_KIND" == invalid && "$gen0" != "$PREV_GEN" ]]; then
    RELOAD_FAILS+=("cycle $((n - 1)) (invalid): the generation moved from $PREV_GEN to $gen0 before the next change (a refused policy was applied?)")
    INVALID_OK=$((INVALID_OK - 1))
  fi
  if (( n % 2 )); then
    kind=valid
    if (( (n + 1) / 2 % 2 )); then ver=B; else ver=A; fi
  else
    kind=invalid; ver=invalid
  fi
  cp "$C/variants/$ver.yaml" "$C/staging/soak.yaml"
  mv -f "$C/staging/soak.yaml" "$POLICY"
  kill -HUP "$P" 2>/dev/null || true
  t0=$(now_s)
  while :; do
    read -r gen stale rules < <(health)
    if [[ "$kind" == valid ]]; then
      [[ "$gen" != NA && "$gen0" != NA && "$gen" -gt "$gen0" && "$stale" == false && "$rules" == "${RULES[$ver]}" ]] && ok=1
    else
      [[ "$stale" == true && "$gen" == "$gen0" && "$rules" == "${RULES[$IN_FORCE]}" ]] && ok=1
    fi
    [[ -n "$ok" ]] && break
    [[ $(awk -v a="$t0" -v b="$(now_s)" -v l="$RELOAD_TIMEOUT" 'BEGIN{print (b-a>=l)}') == 1 ]] && break
    sleep 0.1
  done
  local waited; waited=$(since "$t0")
  if [[ "$kind" == valid ]]; then
    VALID_N=$((VALID_N + 1))
    if [[ -n "$ok" ]]; then VALID_OK=$((VALID_OK + 1)); IN_FORCE=$ver; else res=FAIL; why="valid $ver not in force after ${RELOAD_TIMEOUT}s (generation $gen0 -> $gen, stale $stale, rules $rules, want ${RULES[$ver]})"; fi
  else
    INVALID_N=$((INVALID_N + 1))
    if [[ -n "$ok" ]]; then INVALID_OK=$((INVALID_OK + 1)); else res=FAIL; why="invalid version not refused as expected within ${RELOAD_TIMEOUT}s (generation $gen0 -> $gen, stale $stale, rules $rules, want stale with ${RULES[$IN_FORCE]} rules)"; fi
    [[ -s "$RAW/health-refused.json" ]] || cp "$TMP/health.json" "$RAW/health-refused.json"
  fi
  # which version answers: toggle.soak.test is blocked under B only
  if [[ "$IN_FORCE" == B ]]; then want=403; else want=200; fi
  code=$(probe)
  PROBE_N=$((PROBE_N + 1))
  if [[ "$code" == "$want" ]]; then PROBE_OK=$((PROBE_OK + 1)); else res=FAIL; why="${why:+$why; }probe $TOGGLE gave $code under $IN_FORCE, want $want"; fi
  [[ "$res" == ok ]] || RELOAD_FAILS+=("cycle $n ($kind $ver) at $(( EPOCHSECONDS - T0 )) s: $why")
  [[ "$res" == ok ]] || log "reload cycle $n: $why"
  PREV_KIND=$kind
  PREV_GEN=$gen
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$(( EPOCHSECONDS - T0 ))" "$ver" "$IN_FORCE" "$gen0" "$gen" "$stale" "$rules" "$waited" "$code" "$res" "$rss0" "$(status_kb VmRSS "$P")" >>"$RELOADS"
}

# ---------------------------------------------------------------- main loop
metrics_to "$RAW/metrics-load-start.txt"
cycle=0
next_reload=$((T0 + RELOAD_EVERY))
si=0
DIED=""
while (( EPOCHSECONDS < END )); do
  if ! proxy_alive; then DIED="charte-proxy died at $(( EPOCHSECONDS - T0 )) s of load"; log "$DIED"; break; fi
  if (( EPOCHSECONDS >= next_reload )); then
    cycle=$((cycle + 1))
    reload_cycle "$cycle"
    next_reload=$((next_reload + RELOAD_EVERY))
  fi
  if (( si < ${#S_AT[@]} && EPOCHSECONDS >= T0 + S_AT[si] )); then
    sample "${S_LABEL[si]}"
    rotate_trace
    si=$((si + 1))
  fi
  sleep 0.2
done

# ---------------------------------------------------------------- end of load, drain
log "load period over: waiting for the clients to finish"
t_end=$(now_s)
for p in "${LOADERS[@]}"; do
  for _ in $(seq 1500); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done   # at most 150 s each
  if kill -0 "$p" 2>/dev/null; then NOTES+=("a load client (pid $p) was still running 150 s after the end: stopped"); stop_pid "$p"; fi
  wait "$p" 2>/dev/null || true
done
log "clients done in $(since "$t_end") s; waiting for the proxy to drain (at most ${DRAIN_TIMEOUT}s)"
metrics_to "$RAW/metrics-load-end.txt"
ls -l "/proc/$P/fd" >"$RAW/fds-drain-start.txt" 2>&1 || true
ss -Htanp 2>/dev/null | grep "pid=$P," >"$RAW/sockets-drain-start.txt" || true
proxy_sockets() { # remote port -> established sockets of the proxy towards it
  ss -Htanp state established "( dport = :$1 )" 2>/dev/null | grep -c "pid=$P," || true
}
t_drain=$(now_s)
DRAINED=""
last_log=$EPOCHSECONDS
printf 't_s\thttp_conns\ttunnels\tfds\tto_origin_http\tto_origin_https\n' >"$RAW/drain.tsv"
while proxy_alive; do
  metrics_to "$TMP/metrics-drain.txt"
  a=$(mval "$TMP/metrics-drain.txt" 'charte_active_connections{listener="proxy"')
  tn=$(mval "$TMP/metrics-drain.txt" 'charte_tunnels_active')
  f=$(fd_count "$P")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(since "$t_drain")" "$a" "$tn" "$f" "$(proxy_sockets "$HTTP_PORT")" "$(proxy_sockets "$HTTPS_PORT")" >>"$RAW/drain.tsv"
  if [[ "$a" == "$BASE_ACTIVE" && "$tn" == "$BASE_TUNNELS" && "$f" != NA && "$f" -le $((FD_IDLE + FD_SLACK)) ]]; then DRAINED=1; break; fi
  if (( EPOCHSECONDS - last_log >= 15 )); then log "draining: $a HTTP connections, $tn tunnels, $f descriptors (idle $FD_IDLE)"; last_log=$EPOCHSECONDS; fi
  [[ $(awk -v a="$t_drain" -v b="$(now_s)" -v l="$DRAIN_TIMEOUT" 'BEGIN{print (b-a>=l)}') == 1 ]] && break
  sleep 0.5
done
DRAIN_S=$(since "$t_drain")
DRAIN_NOTE=$(awk -F'\t' 'NR==2 {h0=$5; s0=$6} NR>1 { if (!hh && $5==0) hh=$1; if (!hs && $6==0) hs=$1 }
  END { printf "proxy-to-origin sockets at the end of the load: %s HTTP, %s HTTPS; the last ones closed %s (HTTP) and %s (HTTPS)", h0, s0, (hh==""?"not within the drain":"after " hh " s"), (hs==""?"not within the drain":"after " hs " s") }' "$RAW/drain.tsv")
if proxy_alive; then
  sample end
  rotate_trace
  ls -l "/proc/$P/fd" >"$RAW/fds-end.txt" 2>&1 || true
  ss -Htanp 2>/dev/null | grep "pid=$P," >"$RAW/sockets-end.txt" || true
else
  [[ -n "$DIED" ]] || DIED="charte-proxy died during the load or the drain"
fi
metrics_to "$RAW/metrics-end.txt"
curl -s --max-time 10 "http://$ADMIN/health" >"$RAW/health-end.json" || true
[[ -f "$C/data/trace.log" ]] && TRACE_LINES=$((TRACE_LINES + $(wc -l <"$C/data/trace.log")))

# graceful stop of the proxy: TERM, then its exit status
STOP_NOTE="not stopped (it had died)"
if proxy_alive; then
  kill -TERM "$P" 2>/dev/null || true
  t_stop=$(now_s)
  for _ in $(seq 300); do proxy_alive || break; sleep 0.1; done
  if proxy_alive; then STOP_NOTE="still running 30 s after SIGTERM (killed)"; stop_pid "$P"
  else st=0; wait "$P" 2>/dev/null || st=$?; STOP_NOTE="exited with status $st $(since "$t_stop") s after SIGTERM"; fi
fi
cp "$C/stderr.log" "$RAW/charte-stderr.log" 2>/dev/null || true
cp "$TMP/nginx/error.log" "$RAW/nginx-error.log" 2>/dev/null || true
mkdir -p "$OUT_DIR/configs"
cp "$TMP/nginx/nginx.conf" "$C/variants/A.yaml" "$C/variants/B.yaml" "$C/variants/invalid.yaml" "$OUT_DIR/configs/" 2>/dev/null || true

# ---------------------------------------------------------------- results
WRK_LINE=$(grep '^RESULT ' "$RAW/wrk.txt" || true)
if [[ -n "$WRK_LINE" ]]; then
  read -r W_REQ W_FAIL W_DETAIL W_RATE W_P50 W_P99 W_MAX < <(awk '{
    for (i=2;i<=NF;i++){split($i,kv,"="); v[kv[1]]=kv[2]}
    f=v["err_connect"]+v["err_read"]+v["err_write"]+v["err_timeout"]+v["non2xx"]+v["bad_body"]
    printf "%d %d connect=%d,read=%d,write=%d,timeout=%d,non-2xx=%d,bad-body=%d %.0f %.2f %.2f %.0f\n", v["requests"], f,
      v["err_connect"], v["err_read"], v["err_write"], v["err_timeout"], v["non2xx"], v["bad_body"],
      v["requests"]/(v["duration_us"]/1e6), v["p50_us"]/1000, v["p99_us"]/1000, v["max_us"]/1000 }' <<<"$WRK_LINE")
else
  W_REQ=0; W_FAIL=1; W_DETAIL="wrk gave no RESULT line (see raw/wrk.txt)"; W_RATE=NA; W_P50=NA; W_P99=NA; W_MAX=NA
fi
read -r C_OK C_FAIL < <(connect_counts)
read -r B_OK B_FAIL B_H2 B_RUNS < <(bump_counts)
C_REQ=$((C_OK + C_FAIL)); B_REQ=$((B_OK + B_FAIL))
TOTAL_REQ=$((W_REQ + C_REQ + B_REQ)); TOTAL_FAIL=$((W_FAIL + C_FAIL + B_FAIL))

ML=$RAW/metrics-load-start.txt; ME=$RAW/metrics-end.txt
delta() { # a series absent from both (never counted yet) is 0
  awk -v a="$(mval "$ML" "$1")" -v b="$(mval "$ME" "$1")" 'BEGIN{ if (a=="NA") a=0; if (b=="NA") b=0; print b-a }'
}
R_OK=$(delta 'charte_policy_reloads_total{result="ok"')
R_ERR=$(delta 'charte_policy_reloads_total{result="error"')
P_REQ=$(delta 'charte_requests_total')
P_UPERR=$(delta 'charte_upstream_errors_total')
P_REFUSED=$(delta 'charte_connections_refused_total')
P_DROPPED=$(mval "$ME" 'charte_trace_dropped_total')
P_MINTED=$(mval "$ME" 'charte_tls_leaves_minted')
GEN_START=$(mval "$ML" 'charte_policy_generation'); GEN_END=$(mval "$ME" 'charte_policy_generation')
upstream_kinds=$(awk '/^charte_upstream_errors_total\{/ && $NF+0>0 {print $1 "=" $NF}' "$ME" | tr '\n' ' ')

col() { awk -F'\t' -v l="$1" -v c="$2" '$1==l {print $c; exit}' "$SAMPLES"; }
RSS_START=$(col start 3); FD_START=$(col start 5)
RSS_END=$(col end 3); FD_END=$(col end 5)
LAST_LOAD=$(awk -F'\t' 'NR>1 && $1!="end" {l=$1} END{print l}' "$SAMPLES")
RSS_LAST=$(col "$LAST_LOAD" 3)
# RSS trend under load after the warm-up: least squares over the readings taken before
# each policy change (every RELOAD_EVERY s), less noisy than two samples
RSS_TREND=$(awk -F'\t' -v w="$WARMUP" 'NR>1 && $2>=w && $12!="" { n++; x=$2/60; y=$12/1024; sx+=x; sy+=y; sxx+=x*x; sxy+=x*y; if (n==1) {lo=y; hi=y} if (y<lo) lo=y; if (y>hi) hi=y }
  END { if (n<10 || n*sxx-sx*sx==0) { printf "too few readings after the warm-up for a trend (%d)", n; exit }
    printf "%+.2f MiB a minute over %d readings from %d s (least squares; they range %.1f-%.1f MiB)", (n*sxy-sx*sy)/(n*sxx-sx*sx), n, w, lo, hi }' "$RELOADS")
rss_limit=$(awk -v s="${RSS_START:-0}" -v p="$RSS_GROWTH_PCT" -v m="$RSS_GROWTH_MIB" 'BEGIN{printf "%.0f", s*(1+p/100)+m*1024}')

# checks
if [[ -n "$DIED" ]]; then check FAIL "$DIED"; else check ok "charte-proxy ran the whole soak"; fi
if [[ $TOTAL_FAIL == 0 ]]; then check ok "no allowed request failed ($TOTAL_REQ requests)"
else check FAIL "$TOTAL_FAIL allowed requests failed (HTTP $W_FAIL: $W_DETAIL; CONNECT $C_FAIL; bumped $B_FAIL)"; fi
[[ $W_REQ -gt 0 && $C_REQ -gt 0 && $B_REQ -gt 0 ]] || check FAIL "a kind of load made no request at all (HTTP $W_REQ, CONNECT $C_REQ, bumped $B_REQ)"
if [[ ${#RELOAD_FAILS[@]} == 0 && $VALID_N -gt 0 && $INVALID_N -gt 0 ]]; then
  check ok "reloads: $VALID_N valid versions put in force, $INVALID_N invalid ones refused with the last good one kept, $PROBE_OK/$PROBE_N probes answered by the version in force"
elif [[ ${#RELOAD_FAILS[@]} == 0 ]]; then
  check FAIL "too few policy rewrites to check both kinds ($VALID_N valid, $INVALID_N invalid): DURATION too short for RELOAD_EVERY"
else
  check FAIL "${#RELOAD_FAILS[@]} reload checks failed: ${RELOAD_FAILS[0]}$([[ ${#RELOAD_FAILS[@]} -gt 1 ]] && echo " (and $(( ${#RELOAD_FAILS[@]} - 1 )) more, see reloads.tsv)")"
fi
if [[ -n "$DRAINED" ]]; then check ok "drained in $DRAIN_S s: HTTP connections $BASE_ACTIVE, tunnels $BASE_TUNNELS, descriptors within $FD_SLACK of idle"
else check FAIL "not drained after $DRAIN_S s (HTTP connections, tunnels or descriptors above their idle values; see raw/fds-end.txt, raw/sockets-end.txt)"; fi
if [[ -n "$RSS_START" && -n "$RSS_END" ]]; then
  if [[ $RSS_END -le $rss_limit ]]; then check ok "RSS at the end $(mib "$RSS_END") MiB <= start $(mib "$RSS_START") MiB + ${RSS_GROWTH_PCT} % + ${RSS_GROWTH_MIB} MiB ($(mib "$rss_limit") MiB)"
  else check FAIL "RSS at the end $(mib "$RSS_END") MiB > start $(mib "$RSS_START") MiB + ${RSS_GROWTH_PCT} % + ${RSS_GROWTH_MIB} MiB ($(mib "$rss_limit") MiB)"; fi
  if [[ -n "$RSS_LAST" && $RSS_LAST -le $rss_limit ]]; then check ok "RSS at the last sample under load ($LAST_LOAD) $(mib "$RSS_LAST") MiB within the same limit"
  else check FAIL "RSS at the last sample under load ($LAST_LOAD) $(mib "${RSS_LAST:-}") MiB > $(mib "$rss_limit") MiB"; fi
else
  check FAIL "RSS not sampled at the start and the end"
fi
if [[ -n "$FD_END" && "$FD_END" != NA && $FD_END -le $((FD_IDLE + FD_SLACK)) ]]; then check ok "descriptors at the end $FD_END <= idle $FD_IDLE + $FD_SLACK"
else check FAIL "descriptors at the end ${FD_END:-NA} > idle $FD_IDLE + $FD_SLACK"; fi

VERDICT=PASS
for c in "${CHECKS[@]}"; do [[ "$c" == ok* ]] || VERDICT=FAIL; done

# the proxy's log: warnings and errors, less the expected ones (the refused policy)
LOGF=$RAW/charte-stderr.log
EXPECTED_RE='charte::policy|the new policy was refused|created the organisation.s CA'
LOG_WARN=$(grep -E '^[^ ]+ +(WARN|ERROR) ' "$LOGF" 2>/dev/null | grep -Evc "$EXPECTED_RE" || true)
LOG_TOP=$(grep -E '^[^ ]+ +(WARN|ERROR) ' "$LOGF" 2>/dev/null | grep -Ev "$EXPECTED_RE" \
  | sed -E 's/^[^ ]+ +//; s/[0-9]+(\.[0-9]+)?/N/g' | sort | uniq -c | sort -rn | head -n 8 || true)
LOG_REFUSED=$(grep -c 'the new policy was refused' "$LOGF" 2>/dev/null || true)

# ---------------------------------------------------------------- summary
CPU_MODEL=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
{
  echo "## charte-proxy soak ($(date -u '+%Y-%m-%d %H:%M UTC')): **$VERDICT**"
  echo
  echo "Machine: $(hostname), $(nproc) cores ($CPU_MODEL), kernel $(uname -r), load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Binary: $BIN_NOTE; repo HEAD $HEAD_NOTE."
  echo "Command: \`DURATION=$DURATION RELOAD_EVERY=$RELOAD_EVERY HTTP_CONNS=$HTTP_CONNS HTTP_DELAY_MS=$HTTP_DELAY_MS CONNECT_LOOPS=$CONNECT_LOOPS CONNECT_MIB=$CONNECT_MIB CONNECT_RATE=$CONNECT_RATE BUMP_BATCH=$BUMP_BATCH benches/soak.sh\`."
  echo "Everything on loopback: nginx origin, charte-proxy (TLS inspection on, policy benches/soak/policy.yaml.in with the shipped categories, ${RULES[A]}/${RULES[B]} rules), clients."
  echo
  echo "| load (${DURATION} s) | requests | failures | rate /s | detail |"
  echo "|---|---|---|---|---|"
  echo "| HTTP keep-alive 1 KiB (wrk -t1 -c$HTTP_CONNS, ${HTTP_DELAY_MS} ms pauses, $ORIGIN) | $W_REQ | $W_FAIL | $W_RATE | p50 $W_P50 ms, p99 $W_P99 ms, max $W_MAX ms; $W_DETAIL |"
  echo "| CONNECT tunnel, $CONNECT_MIB MiB downloads ($CONNECT_LOOPS loops of curl -p, limit ${CONNECT_RATE}/s, $TUNNEL no_inspect) | $C_REQ | $C_FAIL | $(awk -v n="$C_REQ" -v d="$DURATION" 'BEGIN{printf "%.1f", n/d}') | $(( C_OK * CONNECT_MIB )) MiB through plain tunnels |"
  echo "| bumped HTTPS 1 KiB ($B_RUNS inspected tunnels of $BUMP_BATCH requests, HTTP/1.1 and HTTP/2 in turn, $ORIGIN) | $B_REQ | $B_FAIL | $(awk -v n="$B_REQ" -v d="$DURATION" 'BEGIN{printf "%.1f", n/d}') | $B_H2 of the successful ones over HTTP/2 |"
  echo "| **total** | **$TOTAL_REQ** | **$TOTAL_FAIL** | | proxy's own count (charte_requests_total): $P_REQ; from the clients' counts $((TOTAL_REQ + B_RUNS + PROBE_N)) (+1 a tunnel of bumped requests, + the probes) |"
  echo
  echo "Policy rewrites every ${RELOAD_EVERY} s: **$VALID_N valid** (in force within ${RELOAD_TIMEOUT} s: $VALID_OK), **$INVALID_N invalid** (refused, last good kept: $INVALID_OK);"
  echo "probe of the version in force ($TOGGLE: 403 under B, 200 under A) right after each: $PROBE_OK/$PROBE_N as expected."
  echo "Proxy counters over the load: charte_policy_reloads_total ok +$R_OK, error +$R_ERR (each rewrite is reloaded twice: SIGHUP and the file watcher); generation $GEN_START -> $GEN_END; 'policy refused' log lines $LOG_REFUSED."
  echo "Reload wait (rewrite to /health showing it), s: $(awk -F'\t' 'NR>1 {v[++n]=$9} END{ if(!n){print "NA"; exit} for(i=2;i<=n;i++){x=v[i];j=i-1;while(j>=1&&v[j]>x){v[j+1]=v[j];j--}v[j+1]=x} printf "median %s, max %s", v[int((n+1)/2)], v[n]}' "$RELOADS")."
  echo
  echo "| sample | t s | RSS MiB | VmHWM MiB | fds | threads | HTTP conns | tunnels | generation | stale | proxy requests | CONNECT+bumped failures |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  echo "| idle, before the load | - | $(mib "$RSS_IDLE") | - | $FD_IDLE | - | $BASE_ACTIVE | $BASE_TUNNELS | - | - | - | - |"
  awk -F'\t' 'NR>1 { printf "| %s | %s | %.1f | %.1f | %s | %s | %s | %s | %s | %s | %s | %s |\n", ($1=="end" ? "end (drained)" : $1), $2, $3/1024, $4/1024, $5, $6, $7, $8, $9, $10, $11, $12 }' "$SAMPLES"
  echo
  echo "RSS trend under load: $RSS_TREND."
  echo "RSS start -> end: $(mib "$RSS_START") -> $(mib "$RSS_END") MiB (last under load: $(mib "$RSS_LAST") MiB, $(awk -F'\t' -v l="$LAST_LOAD" '$1=="start"{r0=$3; t0=$2} $1==l{r1=$3; t1=$2} END{ if (t1>t0) printf "%+.0f KiB a minute from start to %s", (r1-r0)/(t1-t0)*60, l; else print "no slope" }' "$SAMPLES")); fds start -> end: $FD_START -> $FD_END (idle $FD_IDLE)."
  echo "Drain after the load: $DRAIN_S s ($DRAIN_NOTE; upstream_keepalive_seconds is 60 by default). Shutdown: $STOP_NOTE."
  echo "Trace: $TRACE_LINES lines written ($TRACE_ROTATIONS rotations by rename + SIGUSR1), charte_trace_dropped_total $P_DROPPED; leaves minted $P_MINTED;"
  echo "charte_upstream_errors_total +$P_UPERR${upstream_kinds:+ ($upstream_kinds)}; charte_connections_refused_total +$P_REFUSED."
  echo
  echo "### Checks"
  for c in "${CHECKS[@]}"; do echo "- ${c%% *}: ${c#* }"; done
  if [[ ${#RELOAD_FAILS[@]} -gt 0 ]]; then echo; echo "Reload failures:"; for r in "${RELOAD_FAILS[@]:0:10}"; do echo "- $r"; done; fi
  if [[ $C_FAIL -gt 0 || $B_FAIL -gt 0 ]]; then
    echo; echo "First failed CONNECT/bumped runs (time relative to the start):"
    { grep -h ' FAIL ' "$RAW"/connect-*.log 2>/dev/null; grep -v ' fail=0 ' "$RAW/bump.log" 2>/dev/null; } \
      | sort -n | head -n 10 | awk -v t0="$T0" '{ $1 = "t+" ($1 - t0) "s"; print "- `" $0 "`" }'
  fi
  echo
  echo "### charte-proxy log"
  echo "$LOG_WARN warning/error lines besides the expected ones (the refused policy versions)."
  if [[ -n "$LOG_TOP" ]]; then echo '```'; echo "$LOG_TOP"; echo '```'; fi
  if [[ ${#NOTES[@]} -gt 0 ]]; then echo; echo "### Notes"; for n in "${NOTES[@]}"; do echo "- $n"; done; fi
  echo
  echo "Versions: $CHARTE_VERSION; $(nginx -v 2>&1 | sed 's/^nginx version: //'); $(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}'); $(curl --version | head -n1 | awk '{print $1, $2}')."
  echo "Raw outputs in $OUT_DIR: samples.tsv, reloads.tsv, raw/ (wrk, CONNECT and bumped logs, metrics, /health, the proxy's log)."
  echo
  echo "**Verdict: $VERDICT**"
} | tee "$OUT_DIR/summary.md"

log "done; summary at $OUT_DIR/summary.md"
[[ "$VERDICT" == PASS ]] || exit 1
