#!/usr/bin/env bash
# benches/load.sh - load benchmark of charte-proxy against Squid and direct connections,
# on loopback only. One command:
#
#   benches/load.sh                       # builds the release binary, full run
#   CHARTE_BIN=/path/charte-proxy ROUNDS=1 DURATION=5 benches/load.sh
#   CHARTE_BIN=/path/after CHARTE_BIN_B=/path/before benches/load.sh   # two binaries, A/B
#
# It installs what it needs from Debian packages when missing (nginx squid wrk curl
# openssl python3 iproute2 procps time, e2guardian for part 6; only those the parts asked
# for; as root or through sudo), builds the proxy (`cargo build --release`) unless
# CHARTE_BIN is given and part 6's client (`cargo build --release --bench tls_load`),
# then starts, on 127.0.0.1 only:
#   * an nginx origin: /1k (1 KiB) and /64m (64 MiB) over HTTP and over HTTPS (h2 and
#     http/1.1; PUT into /up/ for part 6's uploads), with a certificate for *.bench.test
#     signed by a throw-away test CA made with openssl; for part 6 also on 127.0.0.2:443;
#   * Squid 5 with caching off (as shared/bench/anchors.sh), names from a hosts file;
#   * charte-proxy with a bench policy (benches/load/policy.yaml.in) that loads DOMAINS
#     generated names split into eight categories gen-00 … gen-07, plus the shipped
#     categories, with rules that block some of them for the client's group. The names
#     come from ../shared/bench/gen_domains.py (real UT1 names first when
#     ../shared/datasets/ut1 is there) when the repo's parent holds shared/; otherwise
#     from benches/load/synth_domains.py, FALLBACK_DOMAINS of them, and the report says so.
# and measures, interleaved over ROUNDS rounds, each figure next to its reference from
# the same run:
#   1. 1 KiB keep-alive HTTP: wrk -t1 -cCONNS -dDURATION --latency, absolute-form through
#      each proxy, and direct to nginx: req/s, p50, p99, share of direct.
#   2. CONNECT throughput: 64 MiB over HTTPS (curl) through a plain tunnel (no_inspect
#      host for charte-proxy), best of CONNECT_TRIES per round, and direct.
#   3. RSS (VmHWM and VmRSS) of each proxy after 1 and 2.
#   4. IDLE_TUNNELS idle CONNECT tunnels (TLS set up through them, then idle) held open
#      through charte-proxy, then Squid: RSS before and with them, KiB per tunnel.
#   5. Policy reload under load: a 1 KiB wrk run through charte-proxy with SIGHUP every
#      RELOAD_EVERY s (the whole policy and its DOMAINS names re-read each time), next to
#      a run without reloads: errors, non-2xx, req/s, p99, reloads done.
#   6. Bumped HTTPS (TLS interception, issue 26), through charte-proxy and e2guardian 5.3
#      with sslmitm (Debian's e2guardian; its own setup below), each next to direct TLS to
#      the same nginx, with one Rust client (benches/tls_load.rs, built as a bench
#      target): requests/s inside BUMP_CONNS kept-alive tunnels, 1 KiB, HTTP/1.1 and
#      HTTP/2, with proxy CPU a request; new connections/s (full handshake both sides)
#      with the leaf cache warm (one host) and cold (COLD_HOSTS new names a round); a
#      64 MiB download and a 64 MiB upload (PUT) in one tunnel, MiB/s; and p50/p99/p99.9
#      at fixed request rates (BUMP_RATES, open loop, latency from each request's due
#      time) in kept-alive HTTP/1.1 tunnels, charte-proxy against e2guardian.
#      Part 6 alone: SKIP_PLAIN=1 SKIP_SQUID=1 SKIP_IDLE=1 SKIP_RELOAD=1 SKIP_OPEN_LOOP=1.
#   7. Open-loop latency (run right after 1 and 2): `oha` sends requests at fixed rates
#      (OPEN_LOOP_RATES, each one Squid can carry), 50 connections, latency counted
#      from when each request was due (--latency-correction), through each proxy and
#      direct: p50, p99, p99.9 and proxy CPU a request at equal load. wrk's closed loop
#      (part 1) measures saturation; this measures latency. oha is not packaged by
#      Debian: installed once with `cargo install` into CACHE_DIR when not on PATH.
# With CHARTE_BIN_B, a second charte-proxy binary (B; CHARTE_BIN is A) runs beside the
# first, with the same configuration and policy on CHARTE_PORT_B, and is measured in every
# round of parts 1, 2, 4 and 7 in turn with A (the two swap places every other round, so
# that neither always runs first); the report gives B's rows and B against A per round.
# Parts 5 and 6 measure A only.
# Prints a markdown report (also in OUT_DIR/summary.md); raw outputs in OUT_DIR.
# Everything it starts is stopped on exit (trap), on Ctrl-C and on failure.
#
# Environment knobs (defaults):
#   ROUNDS=3            interleaved rounds of each comparison
#   DURATION=10         seconds of each wrk run and of each TLS client run
#   CONNS=50            wrk connections (wrk -t1)
#   WARMUP=1            seconds of wrk warm-up before each measured run (0: none)
#   CONNECT_TRIES=3     64 MiB downloads per target and round (best one counts)
#   DOMAINS=6000000     generated names when ../shared is there
#   FALLBACK_DOMAINS=1000000   generated names when it is not
#   IDLE_TUNNELS=10000  idle tunnels to hold (0: skip); IDLE_PARALLEL=200 set up at once
#   RELOAD_EVERY=2      seconds between SIGHUPs in the reload run
#   COLD_HOSTS=2000     distinct names per round for the cold leaf-cache run
#   BUMP_CONC=4         concurrent connections of the handshake runs (part 6)
#   BUMP_CONNS=50       kept-alive tunnels of the part 6 request runs
#   BUMP_RATES="40 80 120"   requests/s of part 6's open-loop runs (each one both
#                       proxies carry: e2guardian's ceiling, a new tunnel a request, is the
#                       lower one: 150-380 a second on the shared 2-core VM)
#   BUMP_BULK_TRIES=1   64 MiB downloads and uploads per target and round (best counts)
#   E2G_PORT=13231      e2guardian's loopback port; its origin is nginx on 127.0.0.2:443
#                       (e2guardian 5.3 bumps CONNECTs to port 443 only)
#   TLS_LOAD_BIN=path   the part 6 client (default: cargo build --release --bench tls_load)
#   COMPILED=1          1: compile the bench policy's lists first (`categories compile`,
#                       bench.idx beside it), so that start and every reload map the
#                       compiled index instead of parsing the text lists (0: text lists)
#   OPEN_LOOP_RATES="5000 10000 14000"   requests/s of the open-loop runs (Squid's
#                       ceiling here is about 15 000 in part 1)
#   SKIP_PLAIN=0  SKIP_SQUID=0  SKIP_IDLE=0  SKIP_RELOAD=0  SKIP_BUMP=0  SKIP_OPEN_LOOP=0
#   SKIP_E2G=0          (1: leave that part out; SKIP_PLAIN: parts 1-2; SKIP_E2G: e2guardian
#                       in part 6)
#   CHARTE_BIN=path     use this binary instead of building (cargo build --release)
#   CHARTE_BIN_B=path   a second binary to compare with the first (see above; unset: none)
#   NGINX_WORKERS=1     nginx worker processes
#   HTTP_PORT=18180 HTTPS_PORT=18543 SQUID_PORT=13228 CHARTE_PORT=13229   loopback ports
#   CHARTE_PORT_B=13230 loopback port of CHARTE_BIN_B
#   OUT_DIR=${TMPDIR:-/tmp}/bench-out/load-<stamp>   raw outputs and summary.md
#   CACHE_DIR=${TMPDIR:-/tmp}/bench-cache            generated domain lists, kept between runs
#   KEEP_TMP=0          1: keep the temp dir (configs, data dir, trace) after the run
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
LOAD_DIR=$SCRIPT_DIR/load
SHARED=""
if [[ -d "$SCRIPT_DIR/../../shared" ]]; then SHARED=$(cd "$SCRIPT_DIR/../../shared" && pwd); fi

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
WARMUP=${WARMUP:-1}
CONNECT_TRIES=${CONNECT_TRIES:-3}
DOMAINS=${DOMAINS:-6000000}
FALLBACK_DOMAINS=${FALLBACK_DOMAINS:-1000000}
IDLE_TUNNELS=${IDLE_TUNNELS:-10000}
IDLE_PARALLEL=${IDLE_PARALLEL:-200}
RELOAD_EVERY=${RELOAD_EVERY:-2}
COLD_HOSTS=${COLD_HOSTS:-2000}
BUMP_CONC=${BUMP_CONC:-4}
BUMP_CONNS=${BUMP_CONNS:-50}
BUMP_RATES=${BUMP_RATES-40 80 120}
BUMP_BULK_TRIES=${BUMP_BULK_TRIES:-1}
E2G_PORT=${E2G_PORT:-13231}
E2G_IP=127.0.0.2
TLS_LOAD_BIN=${TLS_LOAD_BIN:-}
SKIP_PLAIN=${SKIP_PLAIN:-0}
SKIP_E2G=${SKIP_E2G:-0}
COMPILED=${COMPILED:-1}
SKIP_SQUID=${SKIP_SQUID:-0}
SKIP_IDLE=${SKIP_IDLE:-0}
SKIP_RELOAD=${SKIP_RELOAD:-0}
SKIP_BUMP=${SKIP_BUMP:-0}
SKIP_OPEN_LOOP=${SKIP_OPEN_LOOP:-0}
OPEN_LOOP_RATES=${OPEN_LOOP_RATES:-5000 10000 14000}
OHA_VERSION=1.16.0
CHARTE_BIN=${CHARTE_BIN:-}
CHARTE_BIN_B=${CHARTE_BIN_B:-}
NGINX_WORKERS=${NGINX_WORKERS:-1}
HTTP_PORT=${HTTP_PORT:-18180}
HTTPS_PORT=${HTTPS_PORT:-18543}
SQUID_PORT=${SQUID_PORT:-13228}
CHARTE_PORT=${CHARTE_PORT:-13229}
CHARTE_PORT_B=${CHARTE_PORT_B:-13230}
KEEP_TMP=${KEEP_TMP:-0}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT_DIR=${OUT_DIR:-${TMPDIR:-/tmp}/bench-out/load-$STAMP}
CACHE_DIR=${CACHE_DIR:-${TMPDIR:-/tmp}/bench-cache}

ORIGIN=origin.bench.test     # plain HTTP and bumped HTTPS origin name
TUNNEL=tunnel.bench.test     # no_inspect name: CONNECT relayed as bytes

declare -A PID=()   # name -> pid of a process this script started
STARTED=()          # pids in start order (for cleanup)
CHILD=""            # client running now (wrk, curl, python, tls_load)
E2D=""              # e2guardian's own dir (lower-case path), removed at exit
HUPPER=""           # SIGHUP loop of the reload run
TMP=""
NOTES=()            # lines for the report's notes

# never let a proxy variable redirect our own clients
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

# progress goes to the script's own stderr (fd 3), even from a trap that fires while a
# client's output is redirected to a file
exec 3>&2
log() { printf '[load %s] %s\n' "$(date +%H:%M:%S)" "$*" >&3; }
die() { log "FATAL: $*"; exit 1; }

# descendants, stop_pid, port_busy, wait_port, launch
source "$(dirname "${BASH_SOURCE[0]}")/lib/procs.sh"

cleanup() {
  local rc=$? i
  set +e
  trap - EXIT INT TERM
  [[ -n "$HUPPER" ]] && stop_pid "$HUPPER"
  [[ -n "$CHILD" ]] && stop_pid "$CHILD"
  for ((i=${#STARTED[@]}-1; i>=0; i--)); do stop_pid "${STARTED[i]}"; done
  if [[ -n "$TMP" && -d "$TMP" ]]; then
    # the proxies' own words, kept even when the run stops early (a proxy that died)
    [[ -n "${RAW:-}" && -d "$RAW" ]] && cp "$TMP/charte/stderr.log" "$RAW/charte-stderr.log" 2>/dev/null
    [[ -n "${RAW:-}" && -d "$RAW" && -n "$E2D" ]] && cp "$E2D/stderr.log" "$RAW/e2g-stderr.log" 2>/dev/null
    if [[ "$KEEP_TMP" == 1 ]]; then log "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
  fi
  if [[ -n "$E2D" && -d "$E2D" ]]; then
    if [[ "$KEEP_TMP" == 1 ]]; then log "e2guardian dir kept: $E2D"; else rm -rf "$E2D"; fi
  fi
  [[ $rc -ne 0 ]] && log "exited with status $rc (every process it started is stopped)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fg_run() { # a bounded client as a waited-for child, so that INT/TERM traps fire at once
  "$@" &
  CHILD=$!
  wait "$CHILD" || true
  CHILD=""
}

status_kb() { # field pid -> sum of /proc/PID/status FIELD (kB) over pid and descendants
  local f=$1 t=0 p v
  for p in "$2" $(descendants "$2"); do
    v=$(awk -v f="$f:" '$1==f{print $2}' "/proc/$p/status" 2>/dev/null || true)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
cpu_ticks() { # utime+stime of pid and its descendants
  local t=0 p v
  for p in "$1" $(descendants "$1"); do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || true)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
machine_ticks() { awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6}' /proc/stat; } # busy total
CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)

# CPU sampling around a run: cpu_begin, run, cpu_end -> "proxy% nginx% machine%"
# (% of one core; machine% is the whole machine's busy share in % of one core, so that
# the share left to the client and to other users of the machine can be read off).
cpu_begin() { # proxy-pid|""
  CB_P=0; CB_N=0; CB_T0=$(date +%s.%N)
  [[ -n "$1" ]] && CB_P=$(cpu_ticks "$1")
  CB_N=$(cpu_ticks "${PID[nginx]}")
  read -r CB_MB CB_MT < <(machine_ticks)
}
cpu_end() { # proxy-pid|""
  local p=NA n t1 mb mt el
  t1=$(date +%s.%N)
  el=$(awk -v a="$CB_T0" -v b="$t1" 'BEGIN{print b-a}')
  [[ -n "$1" ]] && p=$(awk -v a="$CB_P" -v b="$(cpu_ticks "$1")" -v hz="$CLK_TCK" -v d="$el" 'BEGIN{printf "%.0f", (b-a)/hz/d*100}')
  n=$(awk -v a="$CB_N" -v b="$(cpu_ticks "${PID[nginx]}")" -v hz="$CLK_TCK" -v d="$el" 'BEGIN{printf "%.0f", (b-a)/hz/d*100}')
  read -r mb mt < <(machine_ticks)
  awk -v p="$p" -v n="$n" -v b0="$CB_MB" -v t0="$CB_MT" -v b1="$mb" -v t1="$mt" -v np="$NPROC" \
    'BEGIN{printf "%s %s %.0f\n", p, n, (t1>t0 ? (b1-b0)/(t1-t0)*100*np : 0)}'
}

# ---------------------------------------------------------------- packages
SUDO=()
if [[ "$(id -u)" != 0 ]]; then SUDO=(sudo); fi
need=()
pairs=(nginx:nginx curl:curl openssl:openssl python3:python3 ss:iproute2 ps:procps /usr/bin/time:time)
[[ "$SKIP_SQUID" == 1 ]] || pairs+=(squid:squid)
[[ "$SKIP_PLAIN" == 1 && "$SKIP_RELOAD" == 1 ]] || pairs+=(wrk:wrk)
[[ "$SKIP_BUMP" == 1 || "$SKIP_E2G" == 1 ]] || pairs+=(e2guardian:e2guardian unshare:util-linux)
for pair in "${pairs[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if [[ ${#need[@]} -gt 0 ]]; then
  log "installing Debian packages: ${need[*]}"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ---------------------------------------------------------------- preflight
for v in ROUNDS DURATION CONNS WARMUP CONNECT_TRIES DOMAINS FALLBACK_DOMAINS IDLE_TUNNELS IDLE_PARALLEL RELOAD_EVERY COLD_HOSTS BUMP_CONC BUMP_CONNS BUMP_BULK_TRIES E2G_PORT NGINX_WORKERS HTTP_PORT HTTPS_PORT SQUID_PORT CHARTE_PORT CHARTE_PORT_B; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
[[ "$ROUNDS" -ge 1 && "$DURATION" -ge 1 ]] || die "ROUNDS and DURATION must be at least 1"
for q in $OPEN_LOOP_RATES $BUMP_RATES; do [[ "$q" =~ ^[1-9][0-9]*$ ]] || die "OPEN_LOOP_RATES and BUMP_RATES must be whole numbers of requests a second, got '$q'"; done
ports=("$HTTP_PORT" "$HTTPS_PORT" "$CHARTE_PORT")
[[ "$SKIP_SQUID" == 1 ]] || ports+=("$SQUID_PORT")
[[ -z "$CHARTE_BIN_B" ]] || ports+=("$CHARTE_PORT_B")
if [[ "$SKIP_BUMP" != 1 && "$SKIP_E2G" != 1 ]]; then
  # e2guardian's origin: nginx on 127.0.0.2:443 (the only port e2guardian bumps)
  if [[ "$(id -u)" != 0 ]]; then
    NOTES+=("e2guardian left out of part 6: it needs root here (nginx on port 443, a private /etc/hosts through unshare)"); SKIP_E2G=1
  elif ss -Hltn "sport = :443" | grep -q "$E2G_IP:443\|\*:443\|0\.0\.0\.0:443"; then
    NOTES+=("e2guardian left out of part 6: port 443 of $E2G_IP (its origin) is taken"); SKIP_E2G=1
  else
    ports+=("$E2G_PORT")
  fi
fi
for p in "${ports[@]}"; do port_busy "$p" && die "port $p already in use (set HTTP_PORT/HTTPS_PORT/SQUID_PORT/CHARTE_PORT/CHARTE_PORT_B)"; done

# file descriptors: idle tunnels need two a tunnel in the proxy, one in the client
want_fd=$(( IDLE_TUNNELS * 2 + 4096 ))
[[ $want_fd -lt 65536 ]] && want_fd=65536
if ! ulimit -n "$want_fd" 2>/dev/null; then
  hard=$(ulimit -Hn)
  ulimit -n "$hard" 2>/dev/null || true
  # the proxy holds two descriptors a tunnel (client and upstream) plus a few dozen
  if [[ "$hard" != unlimited && $(( IDLE_TUNNELS * 2 + 256 )) -gt $hard ]]; then
    new=$(( (hard - 256) / 2 )); [[ $new -lt 0 ]] && new=0
    NOTES+=("the open-file hard limit is $hard here and cannot be raised (no CAP_SYS_RESOURCE): idle tunnels lowered from $IDLE_TUNNELS to $new (two descriptors a tunnel in the proxy)")
    IDLE_TUNNELS=$new
  fi
fi
log "open-file limit $(ulimit -n)"

# ---------------------------------------------------------------- binary
if [[ -z "$CHARTE_BIN" ]]; then
  command -v cargo >/dev/null || die "cargo not found: install Rust, or give CHARTE_BIN=path/to/charte-proxy"
  log "building: cargo build --release (in $REPO)"
  (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
  CHARTE_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/charte-proxy
fi
[[ -x "$CHARTE_BIN" ]] || die "not an executable: $CHARTE_BIN"
log "binary $CHARTE_BIN ($("$CHARTE_BIN" --version 2>/dev/null || echo 'version unknown'))"
if [[ "$SKIP_BUMP" != 1 && -z "$TLS_LOAD_BIN" ]]; then
  command -v cargo >/dev/null || die "cargo not found: needed to build the part 6 client (or TLS_LOAD_BIN=path, or SKIP_BUMP=1)"
  log "building the part 6 client: cargo build --release --bench tls_load"
  TLS_LOAD_BIN=$(cd "$REPO" && cargo build --release --bench tls_load --message-format=json 2>/dev/null \
    | python3 -c 'import json, sys
exe = [m["executable"] for m in map(json.loads, sys.stdin) if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "tls_load"]
print(exe[-1] if exe else "")') || true
  [[ -n "$TLS_LOAD_BIN" ]] || die "cargo build --release --bench tls_load failed (run it to see why)"
fi
[[ "$SKIP_BUMP" == 1 || -x "$TLS_LOAD_BIN" ]] || die "not an executable: TLS_LOAD_BIN=$TLS_LOAD_BIN"
[[ "$SKIP_BUMP" == 1 ]] || log "part 6 client $TLS_LOAD_BIN"
if [[ -n "$CHARTE_BIN_B" ]]; then
  [[ -x "$CHARTE_BIN_B" ]] || die "not an executable: CHARTE_BIN_B=$CHARTE_BIN_B"
  log "binary B $CHARTE_BIN_B ($("$CHARTE_BIN_B" --version 2>/dev/null || echo 'version unknown'))"
fi

mkdir -p "$OUT_DIR" "$CACHE_DIR" "${TMPDIR:-/tmp}/bench-tmp"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-tmp/load-XXXXXX")
chmod 755 "$TMP"
RAW=$OUT_DIR/raw
mkdir -p "$RAW"
log "temp dir $TMP; raw output -> $OUT_DIR"

# ---------------------------------------------------------------- oha (part 7)
OHA=""
if [[ "$SKIP_OPEN_LOOP" != 1 && -n "$OPEN_LOOP_RATES" ]]; then
  if command -v oha >/dev/null 2>&1; then OHA=$(command -v oha)
  elif [[ -x "$CACHE_DIR/oha/bin/oha" ]]; then OHA=$CACHE_DIR/oha/bin/oha
  elif command -v cargo >/dev/null 2>&1; then
    log "installing oha $OHA_VERSION for part 7 (cargo install, once, into $CACHE_DIR/oha; a few minutes)"
    if cargo install oha --locked --version "$OHA_VERSION" --root "$CACHE_DIR/oha" >"$RAW/oha-install.log" 2>&1; then
      OHA=$CACHE_DIR/oha/bin/oha
    else
      NOTES+=("oha could not be installed (raw/oha-install.log): part 7 (open-loop latency) not measured")
    fi
  else
    NOTES+=("no oha and no cargo to install it: part 7 (open-loop latency) not measured")
  fi
fi

# ---------------------------------------------------------------- domain data
if [[ -n "$SHARED" && -f "$SHARED/bench/gen_domains.py" ]]; then
  ut1=()
  src="gen_domains.py (synthetic names, seed 1)"
  if [[ -d "$SHARED/datasets/ut1" ]]; then
    ut1=(--with-ut1 "$SHARED/datasets/ut1"); src="gen_domains.py (real UT1 names from shared/datasets/ut1 first, then synthetic, seed 1)"
  fi
  NAMES=$CACHE_DIR/domains-$DOMAINS${ut1:+-ut1}.txt
  if [[ ! -s "$NAMES" ]]; then
    log "generating $DOMAINS names with $SHARED/bench/gen_domains.py (kept in $NAMES)"
    python3 "$SHARED/bench/gen_domains.py" list --count "$DOMAINS" --seed 1 "${ut1[@]}" >"$NAMES.part"
    mv "$NAMES.part" "$NAMES"
  fi
  DATA_NOTE="$DOMAINS generated names from shared/bench/$src"
else
  NOTES+=("../shared (the repo's parent's shared/) is ABSENT: the generated categories hold only $FALLBACK_DOMAINS synthetic names from benches/load/synth_domains.py instead of $DOMAINS from shared/bench/gen_domains.py")
  log "WARNING: ../shared is absent: using $FALLBACK_DOMAINS synthetic names from benches/load/synth_domains.py"
  DOMAINS=$FALLBACK_DOMAINS
  NAMES=$CACHE_DIR/synth-$DOMAINS.txt
  if [[ ! -s "$NAMES" ]]; then
    python3 "$LOAD_DIR/synth_domains.py" "$DOMAINS" 1 >"$NAMES.part"
    mv "$NAMES.part" "$NAMES"
  fi
  DATA_NOTE="$DOMAINS synthetic names from benches/load/synth_domains.py (../shared absent)"
fi
grep -q '\.test$' "$NAMES" && die "$NAMES holds names under .test: the origin would be in a list"
GEN=$TMP/gen
log "splitting $(wc -l <"$NAMES") names into 8 categories under $GEN"
mkdir -p "$GEN"
for i in 0 1 2 3 4 5 6 7; do mkdir -p "$GEN/gen-0$i"; done
awk -v d="$GEN" '{ print > (d "/gen-0" (NR % 8) "/domains") }' "$NAMES"

# ---------------------------------------------------------------- certificates and origin
mkdir -p "$TMP/pki" "$TMP/www" "$TMP/nginx/tmp"
(
  cd "$TMP/pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
    -days 2 -subj "/CN=charte load bench test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout origin.key -out origin.csr \
    -subj "/CN=$ORIGIN"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:*.bench.test,DNS:bench.test,IP:127.0.0.1\n' >ext.cnf
  openssl x509 -req -in origin.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out origin.pem
) >"$TMP/pki/openssl.log" 2>&1 || { cat "$TMP/pki/openssl.log" >&2; die "openssl failed"; }
TEST_CA=$TMP/pki/ca.pem
head -c 1024 /dev/urandom >"$TMP/www/1k"
mkdir -p "$TMP/www/up"   # part 6 uploads land here (nginx's workers write them)
head -c $((64*1024*1024)) /dev/urandom >"$TMP/www/64m"
chmod 755 "$TMP/www"; chmod 644 "$TMP/www"/1k "$TMP/www"/64m; chmod 1777 "$TMP/www/up"
E2G_LISTEN=""
[[ "$SKIP_BUMP" == 1 || "$SKIP_E2G" == 1 ]] || E2G_LISTEN="    listen $E2G_IP:443 ssl http2;"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes $NGINX_WORKERS;
worker_rlimit_nofile $(( IDLE_TUNNELS * 2 + 4096 ));
daemon off;
master_process on;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections $(( IDLE_TUNNELS * 2 + 2048 )); }
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
    listen 127.0.0.1:$HTTPS_PORT ssl http2;
$E2G_LISTEN
    ssl_certificate $TMP/pki/origin.pem;
    ssl_certificate_key $TMP/pki/origin.key;
    root $TMP/www;
    location / { }
    # part 6 uploads: WebDAV PUT answers once the whole body is stored
    location /up/ {
      dav_methods PUT;
      create_full_put_path on;
      client_max_body_size 128m;
      client_body_buffer_size 1m;
    }
  }
}
EOF
launch nginx "$TMP/nginx/stderr.log" nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"
if ! { wait_port "$HTTP_PORT" "${PID[nginx]}" && wait_port "$HTTPS_PORT" "${PID[nginx]}"; }; then
  cat "$TMP/nginx/stderr.log" "$TMP/nginx/error.log" >&2 || true; die "nginx did not start"
fi
log "nginx pid ${PID[nginx]} on 127.0.0.1:$HTTP_PORT (HTTP) and :$HTTPS_PORT (HTTPS)"

# ---------------------------------------------------------------- names pinned to loopback
# cold-leaf names: c<round>-<i>.bench.test, COLD_HOSTS a round, each used once
for ((r=1; r<=ROUNDS; r++)); do
  for ((i=1; i<=COLD_HOSTS; i++)); do echo "c$r-$i.bench.test"; done >"$TMP/cold-r$r.txt"
done

# ---------------------------------------------------------------- Squid
TARGETS=(direct)
declare -A ADDR=([direct]="")
if [[ "$SKIP_SQUID" != 1 ]]; then
  d=$TMP/squid
  mkdir -p "$d"
  [[ "$(id -u)" == 0 ]] && chown proxy:proxy "$d"
  printf '127.0.0.1 %s %s localhost\n' "$ORIGIN" "$TUNNEL" >"$d/hosts"
  chmod 644 "$d/hosts"
  cat >"$d/squid.conf" <<EOF
http_port 127.0.0.1:$SQUID_PORT
visible_hostname bench-squid
pid_filename $d/squid.pid
cache_log $d/cache.log
access_log none
cache_store_log none
coredump_dir $d
cache deny all
cache_mem 0 MB
pinger_enable off
hosts_file $d/hosts
dns_nameservers 127.0.0.1
shutdown_lifetime 1 seconds
max_filedescriptors $(( IDLE_TUNNELS * 2 + 4096 ))
acl bench_src src 127.0.0.1/32
http_access allow bench_src
http_access deny all
EOF
  if squid -k parse -f "$d/squid.conf" >"$d/parse.log" 2>&1; then
    launch squid "$d/stderr.log" squid -N -f "$d/squid.conf"
    if wait_port "$SQUID_PORT" "${PID[squid]}" 30; then
      TARGETS+=(squid); ADDR[squid]=127.0.0.1:$SQUID_PORT
      log "squid pid ${PID[squid]} on ${ADDR[squid]}"
    else
      tail -n 20 "$d/stderr.log" "$d/cache.log" >&2 || true
      NOTES+=("Squid did not start (see raw/squid-*.log)"); stop_pid "${PID[squid]}"; unset "PID[squid]"
    fi
  else
    cat "$d/parse.log" >&2; NOTES+=("Squid config refused by squid -k parse")
  fi
fi

# ---------------------------------------------------------------- charte-proxy
C=$TMP/charte
mkdir -p "$C/data" "$C/policy"
sed -e "s#@GEN_DIR@#$GEN#g" -e "s#@REPO@#$REPO#g" "$LOAD_DIR/policy.yaml.in" >"$C/policy/bench.yaml"
{
  echo "# written by benches/load.sh: names pinned to loopback"
  echo "hosts:"
  echo "  $ORIGIN: 127.0.0.1"
  echo "  $TUNNEL: 127.0.0.1"
  cat "$TMP"/cold-r*.txt | sed 's/^/  /; s/$/: 127.0.0.1/'
  # Every bench client comes from 127.0.0.1: lift the per-address cap (1 024 by default)
  # above the idle tunnels, as an administrator would for a NAT or a terminal server.
  echo "limits:"
  echo "  max_connections_per_client: $(( IDLE_TUNNELS + 1024 ))"
  echo "  max_connections: $(( IDLE_TUNNELS + 4096 ))"
} >"$C/server.yaml"
log "checking the bench policy"
"$CHARTE_BIN" check --policy "$C/policy/bench.yaml" >"$RAW/policy-check.txt" 2>&1 \
  || { cat "$RAW/policy-check.txt" >&2; die "the bench policy does not pass check"; }
for h in "$ORIGIN" "$TUNNEL" c1-1.bench.test; do
  "$CHARTE_BIN" explain --policy "$C/policy/bench.yaml" --ip 127.0.0.1 "http://$h/" >>"$RAW/explain.txt" 2>&1 || true
done
INDEX_NOTE="text lists parsed at start and at each reload"
if [[ "$COMPILED" == 1 ]]; then
  log "compiling the bench policy's lists (categories compile)"
  t0=$(date +%s.%N)
  "$CHARTE_BIN" categories compile --policy "$C/policy/bench.yaml" >"$RAW/compile.txt" 2>&1 \
    || { cat "$RAW/compile.txt" >&2; die "categories compile failed"; }
  INDEX_NOTE="compiled index bench.idx ($(du -m "$C/policy/bench.idx" 2>/dev/null | cut -f1) MiB, compiled in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s), mapped at start and at each reload"
fi
BLOCKED_NAME=$(awk '/[a-z]/ && !/[\/:]/ {print; exit}' "$GEN/gen-00/domains")
"$CHARTE_BIN" explain --policy "$C/policy/bench.yaml" --ip 127.0.0.1 "http://$BLOCKED_NAME/" >>"$RAW/explain.txt" 2>&1 || true

# start_charte name binary dir port: starts a charte-proxy with the bench configuration
# and policy (its data in dir/data), and sets LISTENING to its admin address once it says
# it listens (empty if it died or took more than 180 s). Not in a subshell: launch
# records the pid.
start_charte() {
  local name=$1 bin=$2 dir=$3 port=$4 a=""
  mkdir -p "$dir/data"
  launch "$name" "$dir/stderr.log" "$bin" serve --config "$C/server.yaml" --policy "$C/policy/bench.yaml" \
    --listen "127.0.0.1:$port" --portal-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --data-dir "$dir/data" --no-reverse-dns --connect-port "$HTTPS_PORT" --upstream-ca "$TEST_CA"
  for _ in $(seq 1800); do
    a=$(grep -o 'admin=[^ ]*' "$dir/stderr.log" 2>/dev/null | head -n1 | cut -d= -f2 || true)
    [[ -n "$a" ]] && break
    kill -0 "${PID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  LISTENING=$a
}
log "starting charte-proxy (loads the policy and $DOMAINS generated names)"
t_start=$(date +%s.%N)
start_charte charte "$CHARTE_BIN" "$C" "$CHARTE_PORT"
ADMIN=$LISTENING
[[ -n "$ADMIN" ]] || { tail -n 30 "$C/stderr.log" >&2; die "charte-proxy did not print its listening line within 180 s"; }
START_S=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
TARGETS+=(charte); ADDR[charte]=127.0.0.1:$CHARTE_PORT
PROXY_CA=$C/data/ca/ca.pem
log "charte-proxy pid ${PID[charte]} on ${ADDR[charte]}, admin $ADMIN, ready in ${START_S} s"
if [[ -n "$CHARTE_BIN_B" ]]; then
  CB=$TMP/charte-b
  log "starting charte-proxy B ($CHARTE_BIN_B)"
  start_charte charte_b "$CHARTE_BIN_B" "$CB" "$CHARTE_PORT_B"
  ADMIN_B=$LISTENING
  [[ -n "$ADMIN_B" ]] || { tail -n 30 "$CB/stderr.log" >&2; die "charte-proxy B did not print its listening line within 180 s"; }
  TARGETS+=(charte_b); ADDR[charte_b]=127.0.0.1:$CHARTE_PORT_B
  log "charte-proxy B pid ${PID[charte_b]} on ${ADDR[charte_b]}, admin $ADMIN_B"
  NOTES+=("B ($CHARTE_BIN_B) ran beside A ($CHARTE_BIN) in parts 1, 2, 4 and 7; parts 5 (reload) and 6 (bumped HTTPS) measure A only")
fi

metric() { # name-with-labels-prefix -> sum of matching series values (admin /metrics); NA when unreachable
  { curl -s --max-time 10 "http://$ADMIN/metrics" || true; } | awk -v m="$1" 'index($0, m)==1 {s+=$NF; f=1} END{if(f) printf "%.15g\n", s; else print "NA"}'
}
curl -s --max-time 10 "http://$ADMIN/metrics" >"$RAW/metrics-start.txt" || true
curl -s --max-time 10 "http://$ADMIN/health" >"$RAW/health-start.json" || true
INDEX_ENTRIES=$(metric 'charte_index_entries')
INDEX_BYTES=$(metric 'charte_index_bytes')
BUILD_S=$(metric 'charte_policy_build_seconds')
RSS_IDLE_CHARTE=$(status_kb VmRSS "${PID[charte]}")
[[ -n "${PID[charte_b]:-}" ]] && RSS_IDLE_CHARTE_B=$(status_kb VmRSS "${PID[charte_b]}")
[[ -n "${PID[squid]:-}" ]] && RSS_IDLE_SQUID=$(status_kb VmRSS "${PID[squid]}")

# ---------------------------------------------------------------- smoke tests
px_args() { if [[ -n "${ADDR[$1]}" ]]; then echo "--proxy http://${ADDR[$1]}"; else echo "--noproxy * --resolve $ORIGIN:$HTTP_PORT:127.0.0.1 --resolve $TUNNEL:$HTTPS_PORT:127.0.0.1"; fi; }
smoke() { # target -> 1 KiB over HTTP and over a CONNECT tunnel give 200 + 1024 bytes
  local t=$1 out
  read -r -a px <<<"$(px_args "$t")"
  out=$(curl -s -o /dev/null --max-time 10 -w '%{http_code} %{size_download}' "${px[@]}" "http://$ORIGIN:$HTTP_PORT/1k" || true)
  [[ "$out" == "200 1024" ]] || { echo "HTTP 1k via $t: got '$out'"; return 1; }
  out=$(curl -s --http1.1 --cacert "$TEST_CA" -o /dev/null --max-time 10 -w '%{http_code} %{size_download}' "${px[@]}" "https://$TUNNEL:$HTTPS_PORT/1k" || true)
  [[ "$out" == "200 1024" ]] || { echo "CONNECT 1k via $t: got '$out'"; return 1; }
}
OKT=()
for t in "${TARGETS[@]}"; do
  if msg=$(smoke "$t"); then OKT+=("$t"); else log "smoke test failed for $t: $msg"; NOTES+=("$t left out: smoke test failed ($msg)"); fi
done
TARGETS=("${OKT[@]}")
[[ " ${TARGETS[*]} " == *" direct "* ]] || die "direct smoke test failed: origin broken"
[[ " ${TARGETS[*]} " == *" charte "* ]] || die "charte-proxy smoke test failed"
[[ -z "$CHARTE_BIN_B" || " ${TARGETS[*]} " == *" charte_b "* ]] || die "charte-proxy B smoke test failed: nothing to compare"
# the decision path: a generated gen-00 name is blocked for the bench group (403, no upstream)
BLOCK_CODE=$(curl -s -o "$RAW/blocked-page.html" --max-time 10 -w '%{http_code}' --proxy "http://${ADDR[charte]}" "http://$BLOCKED_NAME/" || true)
# a bumped request (inspected tunnel, certificate minted by the proxy's CA)
BUMP_SMOKE=$(curl -s --cacert "$PROXY_CA" -o /dev/null --max-time 10 -w '%{http_code} %{size_download}' --proxy "http://${ADDR[charte]}" "https://$ORIGIN:$HTTPS_PORT/1k" || true)
log "smoke: blocked generated name $BLOCKED_NAME -> $BLOCK_CODE (want 403); bumped https -> $BUMP_SMOKE (want 200 1024)"
[[ "$BLOCK_CODE" == 403 ]] || NOTES+=("a gen-00 name ($BLOCKED_NAME) through charte-proxy gave $BLOCK_CODE, not 403: the rules may not apply")
if [[ "$BUMP_SMOKE" != "200 1024" ]]; then
  NOTES+=("bumped HTTPS smoke test gave '$BUMP_SMOKE': bumped part left out"); SKIP_BUMP=1
fi
proxies() { local t; for t in "${TARGETS[@]}"; do [[ "$t" != direct ]] && echo "$t"; done; return 0; }

# ---------------------------------------------------------------- measurement helpers
RES=$OUT_DIR/results.tsv
printf 'phase\tround\ttarget\treq_s\tp50_ms\tp99_ms\tnon2xx\tsock_err\tMBps\tproxy_cpu\tnginx_cpu\tclient_cpu\tmachine_cpu\textra\n' >"$RES"
rec() { local IFS=$'\t'; echo "$*" >>"$RES"; }

run_wrk() { # target seconds outfile
  local t=$1 dur=$2 out=$3 a=${ADDR[$1]}
  if [[ -n "$a" ]]; then
    WRK_ABS_URL="http://$ORIGIN:$HTTP_PORT/1k" WRK_HOST="$ORIGIN:$HTTP_PORT" \
      fg_run /usr/bin/time -f 'CLIENTCPU %e %U %S' timeout $((dur + 30)) wrk -t1 -c"$CONNS" -d"${dur}s" --latency -s "$LOAD_DIR/wrk.lua" "http://$a/" >"$out" 2>&1
  else
    WRK_ABS_URL="" WRK_HOST="$ORIGIN:$HTTP_PORT" \
      fg_run /usr/bin/time -f 'CLIENTCPU %e %U %S' timeout $((dur + 30)) wrk -t1 -c"$CONNS" -d"${dur}s" --latency -s "$LOAD_DIR/wrk.lua" "http://127.0.0.1:$HTTP_PORT/1k" >"$out" 2>&1
  fi
}
parse_wrk() { # file -> "req_s p50_ms p99_ms non2xx sock_err" (NA when wrk failed)
  local l
  l=$(grep '^RESULT ' "$1" || true)
  if [[ -z "$l" ]]; then echo "NA NA NA NA NA"; return; fi
  echo "$l" | awk '{
    for (i=2;i<=NF;i++){split($i,kv,"="); v[kv[1]]=kv[2]}
    d=v["duration_us"]/1e6
    printf "%.1f %.3f %.3f %d %d\n", v["requests"]/d, v["p50_us"]/1000, v["p99_us"]/1000, v["err_status"], v["err_connect"]+v["err_read"]+v["err_write"]+v["err_timeout"] }'
}
client_cpu() { # file with a CLIENTCPU line -> % of one core
  awk '/^CLIENTCPU/{ if ($2>0) printf "%.0f", ($3+$4)/$2*100; f=1 } END{ if(!f) printf "NA" }' "$1"
}
rotate() { # the list $2.. rotated by $1
  local k=$1; shift
  local items=("$@") n=$# i
  for ((i=0; i<n; i++)); do echo "${items[(i + k) % n]}"; done
}
in_turn() { # k -> TARGETS rotated by k, charte and charte_b swapped when k is odd (they
  # are next to each other in TARGETS: without the swap A would always run just before B)
  local t
  for t in $(rotate "$1" "${TARGETS[@]}"); do
    if (( $1 % 2 )) && [[ -n "${ADDR[charte_b]:-}" ]]; then
      case $t in charte) t=charte_b;; charte_b) t=charte;; esac
    fi
    echo "$t"
  done
}

# ---------------------------------------------------------------- 1 + 2: 1 KiB and CONNECT
[[ "$SKIP_PLAIN" == 1 ]] || log "part 1-2: ${TARGETS[*]}; $ROUNDS rounds x (1 KiB wrk ${DURATION}s c$CONNS + $CONNECT_TRIES x 64 MiB CONNECT)"
for ((r=1; r<=ROUNDS; r++)); do
  [[ "$SKIP_PLAIN" == 1 ]] && break
  for t in $(in_turn $((r - 1))); do
    p=${PID[$t]:-}
    [[ "$WARMUP" -gt 0 ]] && run_wrk "$t" "$WARMUP" "$RAW/warmup-r$r-$t.txt"
    cpu_begin "$p"
    run_wrk "$t" "$DURATION" "$RAW/wrk1k-r$r-$t.txt"
    read -r pc nc mc < <(cpu_end "$p")
    read -r rps p50 p99 n2 se < <(parse_wrk "$RAW/wrk1k-r$r-$t.txt")
    cc=$(client_cpu "$RAW/wrk1k-r$r-$t.txt")
    rec 1k "$r" "$t" "$rps" "$p50" "$p99" "$n2" "$se" NA "$pc" "$nc" "$cc" "$mc" -
    log "round $r $t 1k: $rps req/s p50 $p50 p99 $p99 ms non-2xx $n2 sock-err $se | cpu % of a core: proxy $pc nginx $nc wrk $cc machine $mc"
  done
  for ((k=1; k<=CONNECT_TRIES; k++)); do
    for t in $(in_turn $((r + k))); do
      p=${PID[$t]:-}
      read -r -a px <<<"$(px_args "$t")"
      cpu_begin "$p"
      fg_run /usr/bin/time -f 'CLIENTCPU %e %U %S' curl -s --http1.1 --cacert "$TEST_CA" -o /dev/null --max-time 120 \
        -w 'CURL %{http_code} %{size_download} %{speed_download}\n' "${px[@]}" "https://$TUNNEL:$HTTPS_PORT/64m" >"$TMP/curl.out" 2>&1
      read -r pc nc mc < <(cpu_end "$p")
      cc=$(client_cpu "$TMP/curl.out")
      { echo "== round $r try $k $t"; cat "$TMP/curl.out"; } >>"$RAW/connect.txt"
      read -r _ code size speed < <(grep '^CURL' "$TMP/curl.out" || echo "CURL 0 0 0")
      if [[ "$code" == 200 && "$size" == 67108864 ]]; then mbps=$(awk -v s="$speed" 'BEGIN{printf "%.1f", s/1e6}'); else mbps=NA; fi
      rec connect "$r" "$t" NA NA NA NA NA "$mbps" "$pc" "$nc" "$cc" "$mc" "try$k"
      log "round $r $t CONNECT 64 MiB try $k: $mbps MB/s | cpu %: proxy $pc nginx $nc curl $cc machine $mc"
    done
  done
done
declare -A HWM1=() RSS1=()
for t in $(proxies); do HWM1[$t]=$(status_kb VmHWM "${PID[$t]}"); RSS1[$t]=$(status_kb VmRSS "${PID[$t]}"); done

# ---------------------------------------------------------------- 7: open-loop latency
# Run here, before the idle tunnels and reloads change the proxies' memory. oha resolves
# the URL's name itself even through a proxy, so the URL names localhost (in no list,
# as the bench origin; Squid's hosts file has it too).
if [[ -n "$OHA" ]]; then
  log "part 7: open-loop latency with oha at ${OPEN_LOOP_RATES// /, } req/s, $ROUNDS rounds x ${DURATION}s, ${TARGETS[*]}"
  for ((r=1; r<=ROUNDS; r++)); do
    for q in $OPEN_LOOP_RATES; do
      for t in $(in_turn $((r - 1))); do
        p=${PID[$t]:-}
        px=(); [[ -n "${ADDR[$t]}" ]] && px=(-x "http://${ADDR[$t]}")
        out=$RAW/openloop-q$q-r$r-$t.json
        cpu_begin "$p"
        fg_run /usr/bin/time -f 'CLIENTCPU %e %U %S' -o "$out.cpu" timeout $((DURATION + 30)) "$OHA" --no-tui --output-format json \
          -z "${DURATION}s" -w -q "$q" --latency-correction -c "$CONNS" --ipv4 "${px[@]}" "http://localhost:$HTTP_PORT/1k" >"$out" 2>"$out.err"
        read -r pc nc mc < <(cpu_end "$p")
        read -r rps p50 p99 p999 n2 errs < <(python3 - "$out" <<'PY' 2>/dev/null || echo "NA NA NA NA NA NA"
import json, sys
d = json.load(open(sys.argv[1]))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
non2xx = sum(v for k, v in codes.items() if not k.startswith("2"))
errs = sum(d.get("errorDistribution", {}).values())
print(f"{s['requestsPerSec']:.1f} {p['p50'] * 1e3:.3f} {p['p99'] * 1e3:.3f} {p['p99.9'] * 1e3:.3f} {non2xx} {errs}")
PY
)
        rec "openloop-$q" "$r" "$t" "$rps" "$p50" "$p99" "$n2" "$errs" NA "$pc" "$nc" "$(client_cpu "$out.cpu")" "$mc" "q=$q p999=$p999"
        log "round $r open-loop $q req/s $t: $rps req/s p50 $p50 p99 $p99 p99.9 $p999 ms non-2xx $n2 errors $errs | cpu %: proxy $pc nginx $nc oha $(client_cpu "$out.cpu") machine $mc"
      done
    done
  done
fi

# ---------------------------------------------------------------- 4: idle tunnels
declare -A IDLE=()
if [[ "$SKIP_IDLE" != 1 && "$IDLE_TUNNELS" -gt 0 ]]; then
  for t in $(proxies | sort); do   # charte first
    p=${PID[$t]}
    b=$(status_kb VmRSS "$p")
    log "part 4: $IDLE_TUNNELS idle tunnels through $t (RSS before $b kB)"
    out=$RAW/idle-$t.txt
    python3 "$LOAD_DIR/idle_tunnels.py" --proxy "${ADDR[$t]}" --host "$TUNNEL" --port "$HTTPS_PORT" \
      --cafile "$TEST_CA" --count "$IDLE_TUNNELS" --parallel "$IDLE_PARALLEL" >"$out" 2>&1 &
    CHILD=$!
    ok=""
    for _ in $(seq 3000); do
      grep -q '^READY' "$out" && { ok=1; break; }
      kill -0 "$CHILD" 2>/dev/null || break
      sleep 0.2
    done
    if [[ -z "$ok" ]]; then
      log "idle tunnel client for $t did not get ready"; stop_pid "$CHILD"; CHILD=""
      IDLE[$t]="failed (client did not get ready; see raw/idle-$t.txt)"; continue
    fi
    sleep 3
    a=$(status_kb VmRSS "$p")
    active=""
    if [[ "$t" == charte ]]; then
      curl -s --max-time 10 "http://$ADMIN/metrics" >"$RAW/metrics-idle-held.txt" || true
      curl -s --max-time 10 "http://$ADMIN/health" >"$RAW/health-idle-held.json" || true
      active="charte_active_connections{listener=\"proxy\"} = $(metric 'charte_active_connections{listener="proxy"'), /health tunnels = $(grep -o '"tunnels": *[0-9]*' "$RAW/health-idle-held.json" | grep -o '[0-9]*$' || echo NA) while held"
    fi
    kill -TERM "$CHILD" 2>/dev/null || true
    wait "$CHILD" || true
    CHILD=""
    sleep 3
    z=$(status_kb VmRSS "$p")
    if [[ "$t" == charte ]]; then
      curl -s --max-time 10 "http://$ADMIN/health" >"$RAW/health-idle-closed.json" || true
      active="$active, $(grep -o '"tunnels": *[0-9]*' "$RAW/health-idle-closed.json" | grep -o '[0-9]*$' || echo NA) 3 s after closing"
    fi
    n=$(grep -o 'ok=[0-9]*' "$out" | head -n1 | cut -d= -f2)
    e=$(grep -o 'errors=[0-9]*' "$out" | head -n1 | cut -d= -f2)
    st=$(grep -o 'setup_s=[0-9.]*' "$out" | head -n1 | cut -d= -f2)
    still=$(grep -o 'still_open=[0-9]*' "$out" | cut -d= -f2 || true)
    per=NA; [[ "${n:-0}" -gt 0 ]] && per=$(awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN{printf "%.1f", (a-b)/n}')
    IDLE[$t]="$n tunnels up ($e errors, set up in $st s; ${still:-?} still open at the end): RSS $((b/1024)) MiB before, $((a/1024)) MiB with them, $((z/1024)) MiB 3 s after closing; **$per KiB per tunnel**${active:+; $active}"
    rec idle 1 "$t" NA NA NA "$e" NA NA NA NA NA NA "n=$n before_kb=$b with_kb=$a after_close_kb=$z per_kib=$per"
    log "idle $t: ${IDLE[$t]}"
  done
fi

# ---------------------------------------------------------------- 5: reload under load
if [[ "$SKIP_RELOAD" != 1 ]]; then
  p=${PID[charte]}
  log "part 5: reload under load, $ROUNDS rounds x (wrk without / with SIGHUP every ${RELOAD_EVERY}s)"
  for ((r=1; r<=ROUNDS; r++)); do
    if (( r % 2 )); then order="plain reload"; else order="reload plain"; fi
    for kind in $order; do
      [[ "$WARMUP" -gt 0 ]] && run_wrk charte "$WARMUP" "$RAW/warmup-reload-r$r-$kind.txt"
      ok0=$(metric 'charte_policy_reloads_total{result="ok"')
      er0=$(metric 'charte_policy_reloads_total{result="error"')
      gen0=$(metric 'charte_policy_generation')
      hups=0
      if [[ "$kind" == reload ]]; then
        ( while sleep "$RELOAD_EVERY"; do kill -HUP "$p" 2>/dev/null || exit 0; echo "HUP $(date +%s.%N)"; done ) >"$RAW/hups-r$r.txt" &
        HUPPER=$!
      fi
      cpu_begin "$p"
      run_wrk charte "$DURATION" "$RAW/wrk-$kind-r$r.txt"
      read -r pc nc mc < <(cpu_end "$p")
      if [[ -n "$HUPPER" ]]; then stop_pid "$HUPPER"; HUPPER=""; hups=$(grep -c '^HUP' "$RAW/hups-r$r.txt" || true); fi
      # let the reloads still queued finish before reading the counters (and before the
      # next run): wait until the policy generation has stayed the same for twice the
      # last build time plus 2 s (at most 60 s)
      settle=$(awk -v b="$(metric 'charte_policy_build_seconds')" 'BEGIN{s=int(2*b)+2; print (s<4?4:s)}')
      g_prev=$(metric 'charte_policy_generation'); same=0
      for _ in $(seq 60); do
        sleep 1
        g_now=$(metric 'charte_policy_generation')
        if [[ "$g_now" == "$g_prev" ]]; then same=$((same + 1)); else same=0; g_prev=$g_now; fi
        [[ $same -ge $settle ]] && break
      done
      ok1=$(metric 'charte_policy_reloads_total{result="ok"')
      er1=$(metric 'charte_policy_reloads_total{result="error"')
      gen1=$(metric 'charte_policy_generation')
      bs=$(metric 'charte_policy_build_seconds')
      stale=$(metric 'charte_policy_stale')
      read -r rps p50 p99 n2 se < <(parse_wrk "$RAW/wrk-$kind-r$r.txt")
      cc=$(client_cpu "$RAW/wrk-$kind-r$r.txt")
      extra="hups=$hups reloads_ok=$(awk -v a="$ok0" -v b="$ok1" 'BEGIN{print (a=="NA"?b:b-a)}') reloads_err=$(awk -v a="$er0" -v b="$er1" 'BEGIN{print (a=="NA"?b:b-a)}') generation=$gen0->$gen1 last_build_s=$bs stale=$stale hwm_kb=$(status_kb VmHWM "$p") rss_kb=$(status_kb VmRSS "$p")"
      rec "$kind" "$r" charte "$rps" "$p50" "$p99" "$n2" "$se" NA "$pc" "$nc" "$cc" "$mc" "$extra"
      log "round $r $kind: $rps req/s p50 $p50 p99 $p99 ms non-2xx $n2 sock-err $se | proxy cpu $pc% | $extra"
    done
  done
  curl -s --max-time 10 "http://$ADMIN/health" >"$RAW/health-after-reload.json" || true
fi

# ---------------------------------------------------------------- 6: bumped HTTPS
# e2guardian 5.3 with sslmitm, set up here: its own copy of /etc/e2guardian in a lower-case
# dir (it lower-cases the paths in its list files), charte-proxy's CA to mint its leaves
# (one key for every leaf, its way), the test CA to check nginx, leaf dates around now
# (the packaged defaults start in 2014 and ended in 2024), and a private /etc/hosts in a
# mount namespace: the bench names on 127.0.0.2, where nginx listens on 443, the only
# port e2guardian 5.3 bumps.
start_e2guardian() {
  local now c
  E2D=${TMPDIR:-/tmp}/bench-tmp/e2g-$$-$(date +%s)
  if [[ "$E2D" != "${E2D,,}" ]]; then NOTES+=("e2guardian left out: its dir $E2D is not lower-case (set TMPDIR)"); E2D=""; return 1; fi
  mkdir -p "$E2D/cache" "$E2D/generatedcerts" "$E2D/upstream-ca" "$E2D/ssl"
  chmod 755 "$E2D"
  cp -r /etc/e2guardian "$E2D/etc"
  grep -rl '/etc/e2guardian' "$E2D/etc" | xargs sed -i "s#/etc/e2guardian#$E2D/etc#g"
  cp "$C/data/ca/ca.pem" "$E2D/ssl/mitm-ca.pem"
  cp "$C/data/ca/ca.key" "$E2D/ssl/mitm-ca.key"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$E2D/ssl/leaf.key" 2>/dev/null
  cp "$TEST_CA" "$E2D/upstream-ca/test-ca.pem"
  ln -s test-ca.pem "$E2D/upstream-ca/$(openssl x509 -hash -noout -in "$TEST_CA").0"
  c=$E2D/etc/e2guardian.conf
  sed -i -E \
    -e "s#^filterip *=.*#filterip = 127.0.0.1#" \
    -e "s#^filterports *=.*#filterports = $E2G_PORT#" \
    -e "s#^transparenthttpsport *=.*##" \
    -e "s#^loglevel *=.*#loglevel = 0#" \
    -e "s#^filecachedir *=.*#filecachedir = '$E2D/cache'#" \
    -e "s#^nodaemon *=.*#nodaemon = on#" \
    -e "s#^enablessl *=.*#enablessl = on#" \
    -e "s#^cacertificatepath *=.*#cacertificatepath = '$E2D/ssl/mitm-ca.pem'#" \
    -e "s#^caprivatekeypath *=.*#caprivatekeypath = '$E2D/ssl/mitm-ca.key'#" \
    -e "s#^certprivatekeypath *=.*#certprivatekeypath = '$E2D/ssl/leaf.key'#" \
    -e "s#^generatedcertpath *=.*#generatedcertpath = '$E2D/generatedcerts/'#" \
    "$c"
  now=$(date +%s)
  cat >>"$c" <<EOC

# --- benches/load.sh part 6
loglocation = '$E2D/access.log'
pidfilename = '$E2D/e2guardian.pid'
sslcertificatepath = '$E2D/upstream-ca'
generatedcertstart = $((now - 86400))
generatedcertend = $((now + 2 * 86400))
EOC
  sed -i -E -e "s#^sslmitm *=.*#sslmitm = on#" -e "s#^mitmcheckcert *=.*#mitmcheckcert = on#" "$E2D/etc/e2guardianf1.conf"
  if ! { grep -q '^sslmitm = on' "$E2D/etc/e2guardianf1.conf" && grep -q '^enablessl = on' "$c"; }; then
    NOTES+=("e2guardian left out: its configuration could not be edited (sslmitm/enablessl)"); return 1
  fi
  { echo "127.0.0.1 localhost"; echo "$E2G_IP $ORIGIN"; sed "s/^/$E2G_IP /" "$TMP"/cold-r*.txt; } >"$E2D/hosts"
  chmod 644 "$E2D/hosts"
  chown -R e2guardian:e2guardian "$E2D"
  chmod 600 "$E2D/ssl/"*.key
  launch e2g "$E2D/stderr.log" unshare -m sh -c "mount --make-rprivate / && mount --bind '$E2D/hosts' /etc/hosts && exec e2guardian -N -c '$c'"
  if ! wait_port "$E2G_PORT" "${PID[e2g]}" 60; then
    tail -n 20 "$E2D/stderr.log" >&2 || true
    NOTES+=("e2guardian did not start (raw/e2g-stderr.log)"); cp "$E2D/stderr.log" "$RAW/e2g-stderr.log" 2>/dev/null || true
    stop_pid "${PID[e2g]}"; unset "PID[e2g]"; return 1
  fi
  ADDR[e2g]=127.0.0.1:$E2G_PORT
}

if [[ "$SKIP_BUMP" != 1 ]]; then
  B_TARGETS=(direct charte)
  declare -A GONE=()
  if [[ "$SKIP_E2G" != 1 ]] && start_e2guardian; then
    E2G_SMOKE=$(curl -s --http1.1 --cacert "$PROXY_CA" -o /dev/null --max-time 10 -w '%{http_code} %{size_download}' --proxy "http://${ADDR[e2g]}" "https://$ORIGIN/1k" || true)
    log "e2guardian pid ${PID[e2g]} on ${ADDR[e2g]}; bumped https through it -> $E2G_SMOKE (want 200 1024)"
    if [[ "$E2G_SMOKE" == "200 1024" ]]; then B_TARGETS+=(e2g)
    else NOTES+=("e2guardian smoke test (bumped GET https://$ORIGIN/1k) gave '$E2G_SMOKE': left out of part 6"); fi
  fi
  # tls_load arguments of a target: direct to nginx, or CONNECT through a proxy
  b_args() {
    case $1 in
      direct) echo "--connect 127.0.0.1:$HTTPS_PORT --port $HTTPS_PORT";;
      charte) echo "--proxy ${ADDR[charte]} --port $HTTPS_PORT";;
      e2g) echo "--proxy ${ADDR[e2g]} --port 443";;
    esac
  }
  b_pid() { [[ "$1" == direct ]] || echo "${PID[$1]}"; }
  b_label() { case $1 in direct) echo "direct (nginx)";; charte) echo charte-proxy;; e2g) echo "e2guardian (sslmitm)";; esac; }
  # one run: kind target round [extra tls_load args...]; records phase b-<kind>
  bump() {
    local kind=$1 t=$2 r=$3 p out m0="" extra pc nc mc cc j rate p50 p99 p999 mib okn errs alpn reco ferr
    shift 3
    local ta=() args=()
    read -r -a ta <<<"$(b_args "$t")"
    case $kind in
      ka1) args=(--mode keepalive --http 1 --conns "$BUMP_CONNS" --duration "$DURATION");;
      ka2) args=(--mode keepalive --http 2 --conns "$BUMP_CONNS" --duration "$DURATION");;
      warm) args=(--mode handshake --conns "$BUMP_CONC" --duration "$DURATION");;
      cold) args=(--mode handshake --hosts-file "$TMP/cold-r$r.txt" --conns "$BUMP_CONC" --duration "$DURATION");;
      down) args=(--mode download --path /64m --expect-bytes $((64 << 20)));;
      # no file extension: e2guardian's stock bannedextensionlist refuses .bin and others
      up) args=(--mode upload --path "/up/upload-$t-r$r" --size $((64 << 20)));;
      ol-*) args=(--mode keepalive --http 1 --conns "$BUMP_CONNS" --duration "$DURATION" --rate "${kind#ol-}");;
    esac
    out=$RAW/bump-$kind-r$r-$t.json
    p=$(b_pid "$t")
    if [[ -n "$p" ]] && ! kill -0 "$p" 2>/dev/null; then
      # a proxy that died: said once with its exit status, its runs recorded as not made
      if [[ -z "${GONE[$t]:-}" ]]; then
        local st=0; wait "$p" 2>/dev/null || st=$?
        GONE[$t]="$t stopped during part 6 (exit status $st, before round $r $kind): see raw/$t-stderr.log"
        NOTES+=("${GONE[$t]}"); log "${GONE[$t]}"
      fi
      rec "b-$kind" "$r" "$t" NA NA NA NA NA NA NA NA NA NA "ok=0 first_error=not running"
      return 0
    fi
    [[ "$t" == charte && "$kind" == cold ]] && m0=$(metric 'charte_tls_leaves_minted')
    cpu_begin "$p"
    [[ "$kind" == down || "$kind" == up ]] || args+=(--expect-bytes 1024)
    fg_run /usr/bin/time -f 'CLIENTCPU %e %U %S' timeout $((DURATION + 150)) "$TLS_LOAD_BIN" "${args[@]}" "${ta[@]}" \
      --host "$ORIGIN" --cafile "$TEST_CA" --cafile "$PROXY_CA" "$@" >"$out" 2>&1
    read -r pc nc mc < <(cpu_end "$p")
    cc=$(client_cpu "$out")
    j=$(grep '^{' "$out" | tail -n1 || true)
    read -r rate p50 p99 p999 mib okn errs alpn reco < <(python3 -c 'import json, sys
d = json.loads(sys.argv[1])
f = lambda k, fmt: "NA" if d.get(k) is None else fmt % d[k]
print(f("rate", "%.1f"), f("p50_ms", "%.3f"), f("p99_ms", "%.3f"), f("p999_ms", "%.3f"), f("mib_s", "%.1f"), d["ok"], d["errors"], d.get("alpn") or "none", d.get("reconnects", 0))' "$j" 2>/dev/null \
      || echo "NA NA NA NA NA 0 NA none 0")
    ferr=$(python3 -c 'import json, sys; print((json.loads(sys.argv[1]).get("first_error") or "")[:160])' "$j" 2>/dev/null || head -c 160 "$out")
    ferr=${ferr//[$'\t\n']/ }
    [[ "$okn" == 0 ]] && { rate=NA; mib=NA; }
    extra="ok=$okn p999=$p999 alpn=$alpn reconnects=$reco"
    if [[ -n "$m0" ]]; then extra="$extra leaves_minted=$(awk -v a="$m0" -v b="$(metric 'charte_tls_leaves_minted')" 'BEGIN{print (a=="NA"||b=="NA")?"NA":b-a}')"; fi
    [[ -n "$ferr" ]] && extra="$extra first_error=$ferr"
    rec "b-$kind" "$r" "$t" "$rate" "$p50" "$p99" "$errs" NA "$mib" "$pc" "$nc" "$cc" "$mc" "$extra"
    log "round $r bumped $kind $t: $rate /s p50 $p50 p99 $p99 p99.9 $p999 ms ${mib/#NA/-} MiB/s ok $okn errors $errs | cpu %: proxy $pc nginx $nc client $cc machine $mc${ferr:+ | first error: $ferr}"
  }
  log "part 6: bumped HTTPS, ${B_TARGETS[*]}; $ROUNDS rounds x (h1 and h2 keep-alive c$BUMP_CONNS ${DURATION}s, warm and cold handshakes, 64 MiB down and up, open loop at ${BUMP_RATES:-no rate})"
  # mint the warm host's leaf in each proxy first
  for t in "${B_TARGETS[@]}"; do
    read -r -a ta <<<"$(b_args "$t")"
    "$TLS_LOAD_BIN" --mode handshake --conns 1 --duration 1 "${ta[@]}" --host "$ORIGIN" --cafile "$TEST_CA" --cafile "$PROXY_CA" >"$RAW/bump-prewarm-$t.json" 2>&1 || true
  done
  for ((r=1; r<=ROUNDS; r++)); do
    for kind in ka1 ka2 warm cold; do
      for t in $(rotate $((r - 1)) "${B_TARGETS[@]}"); do bump "$kind" "$t" "$r"; done
    done
    for ((k=1; k<=BUMP_BULK_TRIES; k++)); do
      for kind in down up; do
        for t in $(rotate $((r + k)) "${B_TARGETS[@]}"); do bump "$kind" "$t" "$r"; done
      done
    done
    for q in $BUMP_RATES; do
      for t in $(rotate $((r - 1)) "${B_TARGETS[@]}"); do bump "ol-$q" "$t" "$r"; done
    done
  done
  if [[ -n "${PID[e2g]:-}" ]]; then
    kill -0 "${PID[e2g]}" 2>/dev/null || NOTES+=("e2guardian is NOT running at the end of part 6 (crashed?): see raw/e2g-stderr.log")
    HWM_E2G=$(status_kb VmHWM "${PID[e2g]}")
    cp "$E2D/stderr.log" "$RAW/e2g-stderr.log" 2>/dev/null || true
    cp "$E2D/etc/e2guardian.conf" "$E2D/etc/e2guardianf1.conf" "$RAW/" 2>/dev/null || true
  fi
fi

declare -A HWM2=() RSS2=()
for t in $(proxies); do HWM2[$t]=$(status_kb VmHWM "${PID[$t]}"); RSS2[$t]=$(status_kb VmRSS "${PID[$t]}"); done
curl -s --max-time 10 "http://$ADMIN/metrics" >"$RAW/metrics-end.txt" || true
curl -s --max-time 10 "http://$ADMIN/health" >"$RAW/health-end.json" || true
TRACE_LINES=$(wc -l <"$C/data/trace.log" 2>/dev/null || echo 0)
TRACE_DROPPED=$(metric 'charte_trace_dropped_total')
for t in $(proxies); do kill -0 "${PID[$t]}" 2>/dev/null || NOTES+=("$t is NOT running at the end of the run (crashed?): see raw/$t-stderr.log"); done

# ---------------------------------------------------------------- report
med() { # phase target column -> "median min max n" over rounds (numeric; NA skipped)
  awk -F'\t' -v ph="$1" -v t="$2" -v c="$3" 'NR>1 && $1==ph && $3==t && $c!="NA" {v[++n]=$c+0}
    END { if (!n) { print "NA NA NA 0"; exit }
      for (i=2;i<=n;i++){x=v[i]; j=i-1; while (j>=1 && v[j]>x){v[j+1]=v[j]; j--} v[j+1]=x}
      printf "%s %s %s %d\n", v[int((n+1)/2)], v[1], v[n], n }' "$RES"
}
at_median() { # phase target column -> value of column c in the round with the median req/s
  local m; read -r m _ < <(med "$1" "$2" 4)
  awk -F'\t' -v ph="$1" -v t="$2" -v c="$3" -v m="$m" 'NR>1 && $1==ph && $3==t && $4+0==m+0 {print $c; exit}' "$RES"
}
best() { # phase target column -> max
  awk -F'\t' -v ph="$1" -v t="$2" -v c="$3" 'NR>1 && $1==ph && $3==t && $c!="NA" {if ($c+0>m) m=$c+0; f=1} END{print (f?m:"NA")}' "$RES"
}
sumcol() { awk -F'\t' -v ph="$1" -v t="$2" -v c="$3" 'NR>1 && $1==ph && $3==t && $c!="NA" {s+=$c} END{print s+0}' "$RES"; }
shares_kind() { # reload vs plain runs of charte, per round
  awk -F'\t' 'NR>1 && $3=="charte" && $4!="NA" { if ($1=="reload") x[$2]=$4; if ($1=="plain") y[$2]=$4 }
    END { for (r=1; r<=100; r++) if ((r in x) && (r in y) && y[r]>0) { printf "%sr%d %.2f", sep, r, x[r]/y[r]; sep=", " } print "" }' "$RES"
}
connect_shares() { # target [reference, default direct] -> per-round (best of the round) / (reference's best of the round)
  awk -F'\t' -v a="$1" -v b="${2:-direct}" 'NR>1 && $1=="connect" && $9!="NA" { if ($9+0 > m[$3,$2]+0) m[$3,$2]=$9; rr[$2]=1 }
    END { for (r=1; r<=100; r++) if ((r in rr) && m[b,r]>0 && m[a,r]!="") { printf "%sr%d %.2f", sep, r, m[a,r]/m[b,r]; sep=", " } print "" }' "$RES"
}
shares() { # phase target-a target-b [column, default 4: req/s] -> per-round a/b ratios, "r1 0.61, r2 0.70, ..."
  awk -F'\t' -v ph="$1" -v a="$2" -v b="$3" -v c="${4:-4}" 'NR>1 && $1==ph && $c!="NA" { if ($3==a) x[$2]=$c; if ($3==b) y[$2]=$c }
    END { for (r=1; r<=100; r++) if ((r in x) && (r in y) && y[r]>0) { printf "%sr%d %.2f", sep, r, x[r]/y[r]; sep=", " } print "" }' "$RES"
}
cpu_shares() { # phase target-a target-b -> per-round ratios of proxy CPU a request, a/b
  awk -F'\t' -v ph="$1" -v a="$2" -v b="$3" 'NR>1 && $1==ph && $10!="NA" && $4!="NA" && $4>0 { u=$10/$4; if ($3==a) x[$2]=u; if ($3==b) y[$2]=u }
    END { for (r=1; r<=100; r++) if ((r in x) && (r in y) && y[r]>0) { printf "%sr%d %.2f", sep, r, x[r]/y[r]; sep=", " } print "" }' "$RES"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a=="NA"||b=="NA"||b+0==0) print "NA"; else printf "%.2f", a/b }'; }
mib() { awk -v k="$1" 'BEGIN{ if (k==""||k=="NA") print "n/a"; else printf "%.0f", k/1024 }'; }
label() {
  case $1 in
    direct) echo "direct (nginx)";;
    squid) echo "Squid $(squid -v | head -n1 | sed 's/.*Version //')";;
    charte) if [[ -n "${ADDR[charte_b]:-}" ]]; then echo "charte-proxy A ($(basename "$CHARTE_BIN"))"; else echo "charte-proxy"; fi;;
    charte_b) echo "charte-proxy B ($(basename "$CHARTE_BIN_B"))";;
  esac
}

read -r D_RPS _ < <(med 1k direct 4)
D_MB=$(best connect direct 9)
CPU_MODEL=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
{
  echo "## charte-proxy load bench ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Machine: $(hostname), $NPROC cores ($CPU_MODEL), kernel $(uname -r), load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "**Caveat**: the clients (wrk, curl, oha, Python, tls_load), the proxies and the nginx origin share these $NPROC cores over loopback,"
  echo "and the machine may be shared with other work: quote ratios to the reference measured in the same run, not absolute figures."
  echo "Command: \`${CHARTE_BIN_B:+CHARTE_BIN=$CHARTE_BIN CHARTE_BIN_B=$CHARTE_BIN_B }ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS DOMAINS=$DOMAINS COMPILED=$COMPILED benches/load.sh\`; $ROUNDS interleaved rounds."
  echo "charte-proxy policy: benches/load/policy.yaml.in with $DATA_NOTE in gen-00…gen-07 plus the shipped categories:"
  echo "Index: $INDEX_NOTE; index entries $INDEX_ENTRIES, index bytes $INDEX_BYTES, policy build $BUILD_S s, start to listening ${START_S} s, RSS at idle $(mib "$RSS_IDLE_CHARTE") MiB${RSS_IDLE_CHARTE_B:+ (B $(mib "$RSS_IDLE_CHARTE_B") MiB)}${RSS_IDLE_SQUID:+ (Squid $(mib "$RSS_IDLE_SQUID") MiB)}."
  echo "A gen-00 name through charte-proxy: HTTP $BLOCK_CODE (403 = blocked by rule gen-agents for the client's group); the bench origin ends on \`default: allow\`."
  echo
  if [[ "$SKIP_PLAIN" == 1 ]]; then echo "Parts 1-2 (1 KiB HTTP, CONNECT 64 MiB) not measured (SKIP_PLAIN=1)."; else
    echo "| target | 1 KiB req/s (min-max) | share of direct | p50 ms | p99 ms | non-2xx / socket errors | CPU % of a core: proxy / nginx / wrk | CONNECT 64 MiB MB/s | share | RSS MiB (VmHWM / VmRSS) |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for t in "${TARGETS[@]}"; do
      read -r m mn mx _ < <(med 1k "$t" 4)
      mb=$(best connect "$t" 9)
      if [[ "$t" == direct ]]; then rss="(origin)"; else rss="$(mib "${HWM1[$t]}") / $(mib "${RSS1[$t]}")"; fi
      printf '| %s | %.0f (%.0f-%.0f) | %s | %s | %s | %s / %s | %s / %s / %s | %s | %s | %s |\n' "$(label "$t")" "$m" "$mn" "$mx" \
        "$(ratio "$m" "$D_RPS")" "$(at_median 1k "$t" 5)" "$(at_median 1k "$t" 6)" "$(sumcol 1k "$t" 7)" "$(sumcol 1k "$t" 8)" \
        "$(at_median 1k "$t" 10)" "$(at_median 1k "$t" 11)" "$(at_median 1k "$t" 12)" "$mb" "$(ratio "$mb" "$D_MB")" "$rss"
    done
    echo
    for t in $(proxies); do
      echo "Per-round share of direct, $(label "$t"): 1 KiB req/s $(shares 1k "$t" direct); CONNECT (best of the round) $(connect_shares "$t")." \
        "Proxy CPU per 1 KiB request (less sensitive to the machine's other load): $(awk -F'\t' -v t="$t" 'NR>1 && $1=="1k" && $3==t && $10!="NA" && $4>0 {printf "%sr%s %.0f µs", sep, $2, $10*1e4/$4; sep=", "}' "$RES")."
    done
    if [[ -n "${ADDR[charte_b]:-}" ]]; then
      echo "**B against A**, $(label charte_b) / $(label charte), each round's runs of the two (they swap places every other round):" \
        "1 KiB req/s $(shares 1k charte_b charte); p99 $(shares 1k charte_b charte 6); proxy CPU a request $(cpu_shares 1k charte_b charte);" \
        "CONNECT (best of the round) $(connect_shares charte_b charte)."
    fi
    echo "req/s: median of $ROUNDS rounds of \`wrk -t1 -c$CONNS -d${DURATION}s\` (absolute-form through the proxies); p50/p99 and CPU from the median round."
    echo "CONNECT: best of $((ROUNDS * CONNECT_TRIES)) downloads (curl, TLS to nginx through a plain tunnel; for charte-proxy a no_inspect host), 10^6 bytes/s."
    echo "RSS: summed over the proxy's processes after parts 1-2 (before the idle tunnels, reloads and bumped runs)."
    echo "CPU left to other work on the machine during the 1 KiB runs (whole-machine busy time less proxy, nginx and wrk, % of a core; $NPROC cores = $((NPROC * 100))):" \
      "$(awk -F'\t' 'NR>1 && $1=="1k" && $13!="NA" {o=$13-$12-$11-($10=="NA"?0:$10); printf "%s%s r%s %d", sep, $3, $2, o; sep=", "} END{print ""}' "$RES")."
  fi
  echo
  echo "### Idle CONNECT tunnels"
  if [[ ${#IDLE[@]} -eq 0 ]]; then echo "Not measured (SKIP_IDLE=1 or IDLE_TUNNELS=0)."; fi
  for t in $(proxies); do [[ -n "${IDLE[$t]:-}" ]] && echo "- $(label "$t"): ${IDLE[$t]}"; done
  echo "Each tunnel: CONNECT $TUNNEL:$HTTPS_PORT, TLS handshake with nginx through it, then idle (benches/load/idle_tunnels.py, $IDLE_PARALLEL set up at once)."
  echo
  echo "### Policy reload under load (charte-proxy, SIGHUP every ${RELOAD_EVERY} s during a ${DURATION} s wrk run)"
  if [[ "$SKIP_RELOAD" == 1 ]]; then echo "Not measured (SKIP_RELOAD=1)."; else
    read -r pm pmn pmx _ < <(med plain charte 4)
    read -r rm rmn rmx _ < <(med reload charte 4)
    echo "| run | req/s median (min-max) | share of no-reload | p99 ms (median round) | non-2xx | socket errors | proxy CPU % |"
    echo "|---|---|---|---|---|---|---|"
    printf '| no reload | %.0f (%.0f-%.0f) | 1.00 | %s | %s | %s | %s |\n' "$pm" "$pmn" "$pmx" "$(at_median plain charte 6)" "$(sumcol plain charte 7)" "$(sumcol plain charte 8)" "$(at_median plain charte 10)"
    printf '| SIGHUP every %s s | %.0f (%.0f-%.0f) | %s | %s | %s | %s | %s |\n' "$RELOAD_EVERY" "$rm" "$rmn" "$rmx" "$(ratio "$rm" "$pm")" "$(at_median reload charte 6)" "$(sumcol reload charte 7)" "$(sumcol reload charte 8)" "$(at_median reload charte 10)"
    echo
    echo "Per-round share of the no-reload run: $(shares_kind)."
    echo "Per reload run (SIGHUPs sent, reloads done per charte_policy_reloads_total, last build time, memory):"
    awk -F'\t' 'NR>1 && $1=="reload" {print "- round " $2 ": " $14}' "$RES"
    echo "/health after the reload runs: \`$(head -c 300 "$RAW/health-after-reload.json" 2>/dev/null | tr -d '\n')\`"
  fi
  echo
  echo "### Bumped HTTPS (TLS interception, part 6): charte-proxy and e2guardian against direct TLS, same client"
  if [[ "$SKIP_BUMP" == 1 ]]; then echo "Not measured (SKIP_BUMP=1 or its smoke test failed)."; else
    has_e2g=""; [[ " ${B_TARGETS[*]} " == *" e2g "* ]] && has_e2g=1
    echo "| test | direct | charte-proxy | share of direct | e2guardian | share of direct | charte / e2guardian | p99 ms direct / charte / e2guardian | proxy CPU µs a request (or per MiB), charte / e2guardian | errors direct / charte / e2guardian |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for kind in ka1 ka2 warm cold down up; do
      col=4; per=request
      case $kind in
        ka1) what="1 KiB requests/s, HTTP/1.1, $BUMP_CONNS kept-alive tunnels";;
        ka2) what="1 KiB requests/s, HTTP/2, $BUMP_CONNS kept-alive tunnels";;
        warm) what="new connections/s, leaf cache warm ($ORIGIN every time), $BUMP_CONC at once";;
        cold) what="new connections/s, leaf cache cold ($COLD_HOSTS new names a round), $BUMP_CONC at once";;
        down) what="64 MiB download, MiB/s (best)"; col=9; per=MiB;;
        up) what="64 MiB upload (PUT), MiB/s (best)"; col=9; per=MiB;;
      esac
      v=()
      for t in direct charte e2g; do
        if [[ $col == 9 ]]; then v+=("$(best "b-$kind" "$t" 9)"); else read -r m _ < <(med "b-$kind" "$t" 4); v+=("$m"); fi
      done
      cpu=""
      for t in charte e2g; do
        # proxy CPU % of a core * 10^4 / (requests or MiB a second) = µs each, median over rounds
        u=$(awk -F'\t' -v ph="b-$kind" -v t="$t" -v c="$col" 'NR>1 && $1==ph && $3==t && $10!="NA" && $c!="NA" && $c>0 {print $10*1e4/$c}' "$RES" \
          | sort -g | awk '{v[NR]=$1} END{if (NR) printf "%.0f", v[int((NR+1)/2)]; else printf "NA"}')
        cpu="$cpu${cpu:+ / }$u"
      done
      e2=("${v[2]}" "$(ratio "${v[2]}" "${v[0]}")" "$(ratio "${v[1]}" "${v[2]}")")
      [[ -n "$has_e2g" ]] || e2=(- - -)
      printf '| %s | %s | %s | %s (%s) | %s | %s | %s | %s / %s / %s | %s %s | %s / %s / %s |\n' "$what" "${v[0]}" "${v[1]}" \
        "$(ratio "${v[1]}" "${v[0]}")" "$(shares "b-$kind" charte direct "$col")" "${e2[@]}" \
        "$(at_median "b-$kind" direct 6)" "$(at_median "b-$kind" charte 6)" "$(at_median "b-$kind" e2g 6)" "$cpu" "($per)" \
        "$(sumcol "b-$kind" direct 7)" "$(sumcol "b-$kind" charte 7)" "$(sumcol "b-$kind" e2g 7)"
    done
    echo
    if [[ -n "$BUMP_RATES" ]]; then
      echo "Open loop, 1 KiB requests at fixed rates in $BUMP_CONNS kept-alive HTTP/1.1 tunnels, latency from each request's due time:"
      echo
      echo "| rate req/s | target | req/s done | p50 ms | p99 ms | p99.9 ms | errors | proxy CPU µs a request | p99, e2guardian / charte (per round) |"
      echo "|---|---|---|---|---|---|---|---|---|"
      for q in $BUMP_RATES; do
        for t in "${B_TARGETS[@]}"; do
          read -r m _ < <(med "b-ol-$q" "$t" 4)
          read -r l50 _ < <(med "b-ol-$q" "$t" 5)
          read -r l99 _ < <(med "b-ol-$q" "$t" 6)
          l999=$(awk -F'\t' -v ph="b-ol-$q" -v t="$t" 'NR>1 && $1==ph && $3==t {split($14,a,"p999="); split(a[2],b," "); if (b[1]!="NA") print b[1]}' "$RES" | sort -g | awk '{v[NR]=$1} END{print (NR? v[int((NR+1)/2)] : "NA")}')
          us=$(awk -F'\t' -v ph="b-ol-$q" -v t="$t" 'NR>1 && $1==ph && $3==t && $10!="NA" && $4!="NA" && $4>0 {printf "%s%.0f", sep, $10*1e4/$4; sep=", "}' "$RES")
          cmp=""; [[ "$t" == charte && -n "$has_e2g" ]] && { read -r s99 _ < <(med "b-ol-$q" e2g 6); cmp="$(ratio "$s99" "$l99") ($(shares "b-ol-$q" e2g charte 6))"; }
          printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$q" "$(b_label "$t")" "$m" "$l50" "$l99" "$l999" "$(sumcol "b-ol-$q" "$t" 7)" "${us:--}" "${cmp:--}"
        done
      done
      echo
    fi
    echo "Client: benches/tls_load.rs (rustls, hyper; one client thread, as wrk -t1), the same for every target; medians of $ROUNDS rounds,"
    echo "targets in turn. direct = TLS straight to nginx; charte = CONNECT $ORIGIN:$HTTPS_PORT; e2guardian = CONNECT $ORIGIN:443 (nginx on $E2G_IP:443,"
    echo "the same server block). A new connection = TCP + CONNECT + full TLS handshake (no resumption on the client's side; the proxy's own"
    echo "connection to nginx as it does it) + GET /1k with Connection: close. Keep-alive runs: tunnels set up first, then ${DURATION} s of"
    echo "requests one at a time on each. Proxy CPU: utime+stime of its processes during the run. Leaves minted per charte cold run:"
    echo "$(awk -F'\t' 'NR>1 && $1=="b-cold" && $3=="charte" {split($14,a,"leaves_minted="); split(a[2],b," "); printf "%sr%s %s", sep, $2, b[1]; sep=", "}' "$RES")."
    echo "Tunnels reopened in the keep-alive runs because the server closed them (the client reopens a closed connection inside the next"
    echo "request's time; e2guardian 5.3 answers \`Connection: close\` inside its bumped tunnels, so each of its requests there is a new tunnel):"
    echo "$(awk -F'\t' 'NR>1 && ($1 ~ /^b-ka/ || $1 ~ /^b-ol-/) {split($14,a,"reconnects="); split(a[2],b," "); if (b[1]+0>0) {printf "%s%s r%s %s %s", sep, $1, $2, $3, b[1]; sep=", "; f=1}} END{if(!f) printf "none"}' "$RES")."
    echo "nginx offers h2 and http/1.1 on its HTTPS port: charte-proxy's own connections to it then speak HTTP/2 (pooled), e2guardian's HTTP/1.1."
    [[ -n "${HWM_E2G:-}" ]] && echo "e2guardian: $(e2guardian -v 2>&1 | head -n1) (Debian $(dpkg-query -W -f='${Version}' e2guardian 2>/dev/null || echo '?')), VmHWM $(mib "$HWM_E2G") MiB at the end of part 6, leaves minted with charte-proxy's CA."
    echo "First errors, if any: $(awk -F'\t' 'NR>1 && $1 ~ /^b-/ && index($14, "first_error=") {print $1 " r" $2 " " $3 ": " substr($14, index($14, "first_error=") + 12)}' "$RES" | sort -u -k1,1 -k3,3 | head -n 8 | paste -sd ';' - || true)"
    echo "Squid: not measured with ssl_bump (Debian's squid package is built with GnuTLS, without ssl_bump; squid-openssl would be needed)."
  fi
  echo
  echo "### Open-loop latency at fixed rates (oha, part 7)"
  if [[ -z "$OHA" ]]; then echo "Not measured (SKIP_OPEN_LOOP=1, OPEN_LOOP_RATES empty, or oha missing: see the notes)."; else
    echo "| rate req/s | target | req/s done | p50 ms | p99 ms | p99.9 ms | non-2xx / errors | proxy CPU µs a request | p99, charte-proxy / Squid (per round) |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for q in $OPEN_LOOP_RATES; do
      for t in "${TARGETS[@]}"; do
        read -r m _ < <(med "openloop-$q" "$t" 4)
        read -r l50 _ < <(med "openloop-$q" "$t" 5)
        read -r l99 _ < <(med "openloop-$q" "$t" 6)
        l999=$(awk -F'\t' -v ph="openloop-$q" -v t="$t" 'NR>1 && $1==ph && $3==t {split($14,a,"p999="); print a[2]}' "$RES" | sort -g | awk '{v[NR]=$1} END{print (NR? v[int((NR+1)/2)] : "NA")}')
        us=$(awk -F'\t' -v ph="openloop-$q" -v t="$t" 'NR>1 && $1==ph && $3==t && $10!="NA" && $4>0 {printf "%s%.0f", sep, $10*1e4/$4; sep=", "}' "$RES")
        cmp=""; [[ "$t" == charte && " ${TARGETS[*]} " == *" squid "* ]] && { read -r s99 _ < <(med "openloop-$q" squid 6); cmp="$(ratio "$l99" "$s99") ($(shares "openloop-$q" charte squid 6))"; }
        printf '| %s | %s | %.0f | %s | %s | %s | %s / %s | %s | %s |\n' "$q" "$(label "$t")" "$m" "$l50" "$l99" "$l999" \
          "$(sumcol "openloop-$q" "$t" 7)" "$(sumcol "openloop-$q" "$t" 8)" "${us:--}" "${cmp:--}"
      done
    done
    echo
    echo "\`oha -q RATE -c $CONNS -z ${DURATION}s -w --latency-correction\`, GET http://localhost:$HTTP_PORT/1k through each proxy and direct: requests leave at the"
    echo "rate whatever the answers do, and each latency counts from when its request was due. Medians of $ROUNDS rounds; CPU per round."
    echo "Unlike wrk's closed loop (the table above, where the machine is saturated and every target's p99 is mostly waiting for a core),"
    echo "this compares latency at equal load. oha $("$OHA" --version 2>/dev/null | awk '{print $2}')."
    if [[ -n "${ADDR[charte_b]:-}" ]]; then
      echo
      echo "B against A, $(label charte_b) / $(label charte), per round:"
      for q in $OPEN_LOOP_RATES; do
        echo "- $q req/s: p50 $(shares "openloop-$q" charte_b charte 5); p99 $(shares "openloop-$q" charte_b charte 6); proxy CPU a request $(cpu_shares "openloop-$q" charte_b charte)."
      done
    fi
  fi
  echo
  echo "### Memory and trace at the end"
  for t in $(proxies); do echo "- $(label "$t"): VmHWM $(mib "${HWM2[$t]}") MiB, VmRSS $(mib "${RSS2[$t]}") MiB after every part."; done
  echo "- charte-proxy trace: $TRACE_LINES lines in DATA/trace.log, charte_trace_dropped_total $TRACE_DROPPED."
  if [[ ${#NOTES[@]} -gt 0 ]]; then echo; echo "### Notes"; for n in "${NOTES[@]}"; do echo "- $n"; done; fi
  echo
  echo "Versions: $("$CHARTE_BIN" --version 2>/dev/null || echo charte-proxy)${CHARTE_BIN_B:+ (A: $CHARTE_BIN; B: $CHARTE_BIN_B, $("$CHARTE_BIN_B" --version 2>/dev/null || echo charte-proxy))}; $(nginx -v 2>&1 | sed 's/^nginx version: //'); squid $(squid -v 2>/dev/null | head -n1 | sed 's/.*Version //'); $(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}'); $(curl --version | head -n1 | awk '{print $1, $2}'); $(python3 --version)."
  echo "Raw results: $RES (one line a run: CPU columns in % of one core), outputs in $RAW."
} | tee "$OUT_DIR/summary.md"

mkdir -p "$OUT_DIR/configs"
cp "$TMP/nginx/nginx.conf" "$C/server.yaml" "$C/policy/bench.yaml" "$OUT_DIR/configs/" 2>/dev/null || true
[[ -f "$TMP/squid/squid.conf" ]] && cp "$TMP/squid/squid.conf" "$OUT_DIR/configs/" 2>/dev/null
cp "$C/stderr.log" "$RAW/charte-stderr.log" 2>/dev/null || true
[[ -n "${CB:-}" ]] && { cp "$CB/stderr.log" "$RAW/charte_b-stderr.log" 2>/dev/null || true; }
tail -n 200 "$C/data/trace.log" >"$RAW/charte-trace-tail.log" 2>/dev/null || true
[[ -f "$TMP/squid/cache.log" ]] && cp "$TMP/squid/cache.log" "$RAW/squid-cache.log" 2>/dev/null
cp "$TMP/nginx/error.log" "$RAW/nginx-error.log" 2>/dev/null || true
log "done; summary at $OUT_DIR/summary.md"
