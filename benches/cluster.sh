#!/usr/bin/env bash
# benches/cluster.sh - several proxies on one PostgreSQL (issue 27), on loopback only:
#
#   benches/cluster.sh                     # builds the release binary
#   CHARTE_BIN=/path/charte-proxy SITES=100 ROUNDS=3 benches/cluster.sh
#
# Starts a throw-away PostgreSQL (initdb + pg_ctl in a temp folder, free port, as the
# `postgres` user when run as root), an nginx origin serving 1 KiB, two charte-proxy
# nodes A and B sharing the database and a third, S, on its own SQLite; then measures:
#   1. unblock submissions a second through the portal, SUBMIT_PAR at once, SITES forms
#      (one site each, so each is a new request, durable when acknowledged), on A
#      (PostgreSQL) and on S (SQLite);
#   2. approval propagation: a request approved on node B (the `requests` command with
#      B's server file), timed from the command's return until node A lets the site
#      through (polled every 5 ms), PROPAGATION times: p50, p99, max;
#   3. the request rate through A (PostgreSQL) and S (SQLite), 1 KiB plain HTTP,
#      wrk -t1 -c50, ROUNDS interleaved rounds of DURATION s: the request path reads only
#      memory, so the two should be within noise.
# Everything it starts is stopped on exit. Needs postgresql, nginx, wrk, curl (apt).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SITES=${SITES:-200}
SUBMIT_PAR=${SUBMIT_PAR:-8}
PROPAGATION=${PROPAGATION:-30}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
log() { echo "[cluster $(date -u +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }
for c in nginx wrk curl python3; do command -v "$c" >/dev/null || die "$c is missing (apt-get install -y nginx wrk curl python3)"; done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x "$PGBIN/initdb" ]] || die "PostgreSQL is missing (apt-get install -y postgresql)"
if [[ -z "${CHARTE_BIN:-}" ]]; then
  log "building the release binary"
  cargo build --release --quiet
  CHARTE_BIN=$ROOT/target/release/charte-proxy
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

TMP=$(mktemp -d /tmp/charte-cluster.XXXXXX)
chmod 755 "$TMP"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f "$TMP/pg/data/postmaster.pid" ]] && as_pg "$PGBIN/pg_ctl" -D "$TMP/pg/data" -m immediate stop >/dev/null 2>&1 || true
  [[ -f "$TMP/nginx.pid" ]] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# ---------------------------------------------------------------- PostgreSQL
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PG_PORT=$(free_port)
mkdir -p "$TMP/pg"
[[ $(id -u) == 0 ]] && chown postgres "$TMP/pg"
as_pg "$PGBIN/initdb" -D "$TMP/pg/data" -A trust -U postgres >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$TMP/pg/data" -l "$TMP/pg/server.log" -w \
  -o "-p $PG_PORT -k $TMP/pg -c listen_addresses=127.0.0.1" start >/dev/null
as_pg psql -X -q -h "$TMP/pg" -p "$PG_PORT" -U postgres -d postgres \
  -c "CREATE ROLE charte LOGIN PASSWORD 'bench'" -c "CREATE DATABASE charte OWNER charte" >/dev/null
log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"

# ---------------------------------------------------------------- origin
ORIGIN_PORT=$(free_port)
mkdir -p "$TMP/www" "$TMP/nginx-tmp"
head -c 1024 /dev/urandom >"$TMP/www/1k"
chmod -R a+rX "$TMP/www"
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/octet-stream;
  keepalive_requests 10000000;
  client_body_temp_path $TMP/nginx-tmp; proxy_temp_path $TMP/nginx-tmp;
  fastcgi_temp_path $TMP/nginx-tmp; uwsgi_temp_path $TMP/nginx-tmp; scgi_temp_path $TMP/nginx-tmp;
  server { listen 127.0.0.1:$ORIGIN_PORT; root $TMP/www; location / { } }
}
EOF
nginx -c "$TMP/nginx.conf" &
PIDS+=($!)

# ---------------------------------------------------------------- policy and nodes
mkdir -p "$TMP/policy/categories/blocked"
for ((i = 1; i <= SITES + PROPAGATION; i++)); do echo "s$i.bench.test"; done >"$TMP/policy/categories/blocked/domains"
cat >"$TMP/policy/policy.yaml" <<EOF
version: 1
categories: [categories]
groups:
  agents:
    networks: [127.0.0.1/32]
internal_sites: [127.0.0.0/8]
rules:
  - id: demandes
    approved_requests: true
    action: allow
  - id: bloque
    groups: [agents]
    categories: [blocked]
    action: block
    reason: {fr: "Bloqué (banc d'essai)", en: "Blocked (bench)"}
default: allow
EOF
echo "postgres://charte:bench@127.0.0.1:$PG_PORT/charte" >"$TMP/pg-url"
chmod 600 "$TMP/pg-url"
node() { # name store(pg|sqlite)
  local n=$1 d=$TMP/$1
  mkdir -p "$d"
  {
    echo "hosts:"
    echo "  allowed.bench.test: 127.0.0.1"
    sed 's/^/  /; s/$/: 127.0.0.1/' "$TMP/policy/categories/blocked/domains"
    if [[ $2 == pg ]]; then printf 'store:\n  postgres:\n    url_file: %s\n' "$TMP/pg-url"; fi
  } >"$d/server.yaml"
  (cd "$TMP/policy" && CHARTE_LOG=warn exec "$CHARTE_BIN" serve --config "$d/server.yaml" --policy policy.yaml \
    --listen 127.0.0.1:0 --portal-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --data-dir "$d/data" --no-reverse-dns >"$d/out" 2>"$d/err") &
  PIDS+=($!)
  for _ in $(seq 300); do grep -q "^listening" "$d/out" 2>/dev/null && break; sleep 0.1; done
  grep -q "^listening" "$d/out" || { cat "$d/err" >&2; die "node $n did not start"; }
  local line; line=$(grep "^listening" "$d/out")
  eval "${n}_PROXY=$(sed -E 's/.*proxy=([^ ]+).*/\1/' <<<"$line")"
  eval "${n}_PORTAL=$(sed -E 's/.*portal=([^ ]+).*/\1/' <<<"$line")"
}
node A pg; node B pg; node S sqlite
log "nodes: A $A_PROXY and B $B_PROXY (PostgreSQL), S $S_PROXY (SQLite)"

link_of() { # proxy site -> token
  curl -s -x "$1" "http://$2:$ORIGIN_PORT/1k" | grep -o '/demande?token=[^"]*' | head -1 | sed 's/&amp;/\&/g; s/.*token=//'
}
submit_all() { # proxy portal first last -> seconds
  local proxy=$1 portal=$2 first=$3 last=$4 i
  : >"$TMP/tokens"
  for ((i = first; i <= last; i++)); do link_of "$proxy" "s$i.bench.test" >>"$TMP/tokens"; done
  [[ $(grep -c . "$TMP/tokens") == $((last - first + 1)) ]] || die "block pages without a link through $proxy"
  local t0 t1
  t0=$(date +%s.%N)
  xargs -P "$SUBMIT_PAR" -I{} curl -s -o /dev/null -w '%{http_code}\n' --data-urlencode "token={}" \
    --data-urlencode "justification=banc d'essai" --data-urlencode "wanted=7d" "http://$portal/demande" \
    <"$TMP/tokens" >"$TMP/codes"
  t1=$(date +%s.%N)
  [[ $(grep -c '^200$' "$TMP/codes") == $((last - first + 1)) ]] || die "not every form was taken: $(sort "$TMP/codes" | uniq -c | tr '\n' ' ')"
  python3 -c "print(f'{$t1 - $t0:.3f}')"
}

# 1. submissions
ta=$(submit_all "$A_PROXY" "$A_PORTAL" 1 "$SITES")
ts=$(submit_all "$S_PROXY" "$S_PORTAL" 1 "$SITES")
rate_a=$(python3 -c "print(round($SITES / $ta))")
rate_s=$(python3 -c "print(round($SITES / $ts))")
log "submissions: PostgreSQL $rate_a/s, SQLite $rate_s/s ($SITES forms, $SUBMIT_PAR at once)"

# 2. propagation: sites after SITES, one request each through A, approved on B.
: >"$TMP/prop"
for ((k = 1; k <= PROPAGATION; k++)); do
  i=$((SITES + k))
  tok=$(link_of "$A_PROXY" "s$i.bench.test")
  code=$(curl -s -o /dev/null -w '%{http_code}' --data-urlencode "token=$tok" --data-urlencode "justification=p" \
    --data-urlencode "wanted=7d" "http://$A_PORTAL/demande")
  [[ $code == 200 ]] || die "propagation request $k: $code"
  id=$((SITES + k))
  CHARTE_LOG=warn "$CHARTE_BIN" requests --config "$TMP/B/server.yaml" --data-dir "$TMP/B/data" approve "$id" --scope group:agents --for 7d >/dev/null
  t0=$(date +%s%N)
  until [[ $(curl -s -o /dev/null -w '%{http_code}' -x "$A_PROXY" "http://s$i.bench.test:$ORIGIN_PORT/1k") == 200 ]]; do
    (( $(date +%s%N) - t0 < 10000000000 )) || die "request $id not open on A after 10 s"
    sleep 0.005
  done
  echo $(( ($(date +%s%N) - t0) / 1000 )) >>"$TMP/prop"
done
read -r p50 p99 pmax < <(python3 - "$TMP/prop" <<'EOF'
import sys
v = sorted(int(x) for x in open(sys.argv[1]))
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print(q(0.5) / 1000, q(0.99) / 1000, v[-1] / 1000)
EOF
)
log "propagation B -> A (ms): p50 $p50 p99 $p99 max $pmax ($PROPAGATION approvals)"

# 3. request rate, PostgreSQL node vs SQLite node
wrk_rate() { # proxy
  WRK_ABS_URL="http://allowed.bench.test:$ORIGIN_PORT/1k" WRK_HOST="allowed.bench.test:$ORIGIN_PORT" \
    wrk -t1 -c50 -d"${DURATION}s" -s "$ROOT/benches/load/wrk.lua" "http://$1/" | sed -n 's/^RESULT requests=\([0-9]*\) duration_us=\([0-9]*\).*err_status=\([0-9]*\).*/\1 \2 \3/p'
}
RATES=()
for ((r = 1; r <= ROUNDS; r++)); do
  order=(A S); ((r % 2)) || order=(S A)
  for n in "${order[@]}"; do
    px=${n}_PROXY
    read -r reqs us errs < <(wrk_rate "${!px}")
    [[ $errs == 0 ]] || die "wrk through $n: $errs errors"
    rate=$(python3 -c "print(round($reqs * 1e6 / $us))")
    RATES+=("r$r $n $rate")
    log "round $r node $n ($([[ $n == A ]] && echo PostgreSQL || echo SQLite)): $rate req/s"
  done
done

echo
echo "## charte-proxy cluster bench ($(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) cores)"
echo
echo "| what | PostgreSQL (nodes A, B) | SQLite (node S) |"
echo "|---|---|---|"
echo "| unblock submissions a second ($SITES forms, $SUBMIT_PAR at once, through the portal) | $rate_a | $rate_s |"
echo "| approval on B until A lets the site through, ms ($PROPAGATION times) | p50 $p50, p99 $p99, max $pmax | — |"
for ((r = 1; r <= ROUNDS; r++)); do
  a=$(printf '%s\n' "${RATES[@]}" | awk -v r="r$r" '$1 == r && $2 == "A" {print $3}')
  s=$(printf '%s\n' "${RATES[@]}" | awk -v r="r$r" '$1 == r && $2 == "S" {print $3}')
  echo "| 1 KiB plain HTTP req/s, wrk -t1 -c50 ${DURATION}s, round $r | $a | $s (A/S $(python3 -c "print(f'{$a / $s:.2f}')")) |"
done
