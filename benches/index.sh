#!/usr/bin/env bash
# index.sh - the category index at scale, through the product's own commands:
#
#   1. a six-million-domain category folder (real UT1 lists topped up by
#      ../shared/bench/gen_domains.py) beside the shipped categories, under a
#      policy that blocks it for a group;
#   2. `charte-proxy categories compile`: wall time, peak RSS, file size;
#   3. open-to-ready: `check --quiet` and `serve` (exec to its "listening" line)
#      with the compiled file, and with the text lists for comparison;
#   4. `charte-proxy classify` on a 1 000 000-host stream with half hits
#      (gen_domains.py queries): lookups/s (whole run and net of start-up), peak
#      RSS, and the answers checked against the stream (every hit found);
#   5. optionally (SQUIDGUARD=1, needs root or sudo for apt): squidGuard 1.6 on
#      the UT1 lists with ../shared/bench/squidguard.sh's query stream, and
#      `classify` on the very same stream and lists, in the same run.
#
# Usage: benches/index.sh        knobs: DOMAINS=6000000 QUERIES=1000000 RUNS=3
#        SQUIDGUARD=0 CHARTE_BIN=target/release/charte-proxy
#        OUT_DIR=${TMPDIR:-/tmp}/bench-out/index-<stamp>  DATA_DIR (cached lists)
# Needs ../shared/bench and ../shared/datasets/ut1 beside the repository.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$(cd "$REPO/.." && pwd)/shared}
DOMAINS=${DOMAINS:-6000000}
QUERIES=${QUERIES:-1000000}
RUNS=${RUNS:-3}
SQUIDGUARD=${SQUIDGUARD:-0}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT_DIR=${OUT_DIR:-${TMPDIR:-/tmp}/bench-out/index-$STAMP}
DATA_DIR=${DATA_DIR:-${TMPDIR:-/tmp}/bench-data/index-$DOMAINS}
BIN=${CHARTE_BIN:-$REPO/target/release/charte-proxy}
PIDS=()

log() { printf '[index %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

[[ -f "$SHARED/bench/gen_domains.py" && -d "$SHARED/datasets/ut1" ]] || {
  log "needs $SHARED/bench/gen_domains.py and $SHARED/datasets/ut1 (the shared folder beside the repository): not found, nothing measured"
  exit 2
}
for t in python3 /usr/bin/time; do command -v "$t" >/dev/null || { log "needs $t"; exit 2; }; done
if [[ -z "${CHARTE_BIN:-}" ]]; then
  log "building the release binary"
  (cd "$REPO" && cargo build --release --locked --bin charte-proxy >&2)
fi
mkdir -p "$OUT_DIR" "$DATA_DIR"
REPORT=$OUT_DIR/summary.md
say() { echo "$*" | tee -a "$REPORT"; }
med() { sort -g | awk '{a[NR]=$1} END{ if (NR) print a[int((NR+1)/2)]; else print "NA"}'; }

# ---------------------------------------------------------------- 1. data
BIG=$DATA_DIR/categories/big
if [[ ! -s "$BIG/domains" ]]; then
  log "generating $DOMAINS domains (UT1 first) into $BIG/domains"
  mkdir -p "$BIG"
  python3 "$SHARED/bench/gen_domains.py" list --count "$DOMAINS" --seed 1 \
    --with-ut1 "$SHARED/datasets/ut1" >"$BIG/domains.tmp"
  mv "$BIG/domains.tmp" "$BIG/domains"
fi
if [[ ! -s "$DATA_DIR/queries.txt" ]]; then
  log "generating $QUERIES queries, half hits"
  python3 "$SHARED/bench/gen_domains.py" queries --list "$BIG/domains" \
    --count "$QUERIES" --hit-ratio 0.5 --seed 2 >"$DATA_DIR/queries.txt"
fi
lines=$(wc -l <"$BIG/domains")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/charte-index.XXXXXX")
PIDS+=()
trap 'cleanup; rm -rf "$WORK"' EXIT
# The policy: the shipped folders plus the big one, which is blocked for agents.
cat >"$WORK/policy.yaml" <<EOF
version: 1
categories:
  - $REPO/categories/charte
  - $REPO/categories/ut1
  - $DATA_DIR/categories
groups:
  agents:
    networks: [127.0.0.0/8]
no_inspect:
  categories: [bank, health]
rules:
  - id: big
    groups: [agents]
    categories: [big]
    action: block
    reason: {fr: "Liste de test (6 millions de domaines)", en: "Test list (six million domains)"}
default: allow
EOF

# ---------------------------------------------------------------- 2. compile
log "compiling ($lines lines in the big list)"
/usr/bin/time -f '%e %M' -o "$WORK/compile.time" \
  "$BIN" categories compile --policy "$WORK/policy.yaml" 2>"$WORK/compile.err" || {
  cat "$WORK/compile.err" >&2; exit 1; }
read -r c_wall c_rss <"$WORK/compile.time"
idx_bytes=$(stat -c %s "$WORK/policy.idx")
grep -v '^\s*$' "$WORK/compile.err" | tail -n 2 >&2 || true

# ---------------------------------------------------------------- 3. open-to-ready
check_time() { # prints wall seconds of `check --quiet`
  /usr/bin/time -f '%e %M' -o "$WORK/check.time" "$BIN" check --quiet --policy "$WORK/policy.yaml" >/dev/null 2>"$WORK/check.err" || true
  cat "$WORK/check.time"
}
serve_time() { # exec → "listening" line, seconds; then RSS
  local t0 t1 pid rss
  rm -rf "$WORK/data"
  t0=$(date +%s.%N)
  "$BIN" serve --policy "$WORK/policy.yaml" --listen 127.0.0.1:0 --portal-listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0 --data-dir "$WORK/data" --no-reverse-dns --no-inspect \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
  pid=$!
  PIDS+=("$pid")
  while ! grep -q '^listening ' "$WORK/serve.out" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/serve.err" >&2; return 1; }
    sleep 0.005
  done
  t1=$(date +%s.%N)
  rss=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk -v a="$t0" -v b="$t1" -v r="$rss" 'BEGIN{printf "%.3f %d\n", b-a, r}'
}
: >"$OUT_DIR/open.txt"
for r in $(seq "$RUNS"); do
  read -r w m < <(check_time); echo "check compiled $w $m" >>"$OUT_DIR/open.txt"
  read -r w m < <(serve_time); echo "serve compiled $w $m" >>"$OUT_DIR/open.txt"
done
grep -q stale "$WORK/check.err" && { log "the compiled index was not used:"; cat "$WORK/check.err" >&2; exit 1; }
mv "$WORK/policy.idx" "$WORK/policy.idx.off"
for r in $(seq "$RUNS"); do
  read -r w m < <(check_time); echo "check text $w $m" >>"$OUT_DIR/open.txt"
  read -r w m < <(serve_time); echo "serve text $w $m" >>"$OUT_DIR/open.txt"
done
mv "$WORK/policy.idx.off" "$WORK/policy.idx"

# ---------------------------------------------------------------- 4. classify
: >"$OUT_DIR/classify.txt"
startup() { # classify with empty input: start-up alone
  /usr/bin/time -f '%e %M' -o "$WORK/s.time" "$BIN" classify --policy "$WORK/policy.yaml" </dev/null >/dev/null
  cat "$WORK/s.time"
}
for r in $(seq "$RUNS"); do
  read -r sw sm < <(startup)
  /usr/bin/time -f '%e %M' -o "$WORK/c.time" "$BIN" classify --policy "$WORK/policy.yaml" \
    <"$DATA_DIR/queries.txt" >"$WORK/classify.out"
  read -r w m <"$WORK/c.time"
  echo "$w $m $sw $sm" >>"$OUT_DIR/classify.txt"
done
hits=$(awk -F'\t' '$2 ~ /(^|,)big(,|$)/' "$WORK/classify.out" | wc -l)
out_lines=$(wc -l <"$WORK/classify.out")
q_lines=$(wc -l <"$DATA_DIR/queries.txt")
[[ "$out_lines" == "$q_lines" ]] || { log "classify wrote $out_lines lines for $q_lines queries"; exit 1; }

# ---------------------------------------------------------------- report
{
  echo "## Category index at scale ($(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  echo
  echo "Big list: $lines lines (UT1 first, then gen_domains.py), plus the shipped categories."
  echo
  echo "| measure | figure |"
  echo "|---|---|"
} | tee -a "$REPORT"
say "| \`categories compile\` | ${c_wall} s wall, peak RSS $(awk -v k="$c_rss" 'BEGIN{printf "%.0f", k/1024}') MiB, file $(awk -v b="$idx_bytes" 'BEGIN{printf "%.1f", b/1048576}') MiB |"
for what in "check compiled" "serve compiled" "check text" "serve text"; do
  w=$(awk -v k="$what" '$1" "$2==k{print $3}' "$OUT_DIR/open.txt" | med)
  m=$(awk -v k="$what" '$1" "$2==k{print $4}' "$OUT_DIR/open.txt" | med)
  say "| \`$what\`: exec → ready (median of $RUNS) | ${w} s, RSS $(awk -v k="$m" 'BEGIN{printf "%.0f", k/1024}') MiB |"
done
w=$(awk '{print $1}' "$OUT_DIR/classify.txt" | med)
m=$(awk '{print $2}' "$OUT_DIR/classify.txt" | med)
sw=$(awk '{print $3}' "$OUT_DIR/classify.txt" | med)
say "| \`classify\`, $q_lines hosts (half hits) | ${w} s wall incl. ${sw} s start-up: $(awk -v n="$q_lines" -v w="$w" 'BEGIN{printf "%.0f", n/w}') lookups/s overall, $(awk -v n="$q_lines" -v w="$w" -v s="$sw" 'BEGIN{ if (w-s>0) printf "%.0f", n/(w-s); else print "n/a"}') net of start-up; peak RSS $(awk -v k="$m" 'BEGIN{printf "%.0f", k/1024}') MiB; $hits hosts found in \`big\` |"

# ---------------------------------------------------------------- 5. squidGuard
if [[ "$SQUIDGUARD" == 1 ]]; then
  if ! command -v squidGuard >/dev/null; then
    SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
    $SUDO apt-get install -y -qq squidguard squid >&2
  fi
  SG_OUT=$OUT_DIR/squidguard
  log "squidGuard on UT1 (shared squidguard.sh), then classify on the same stream"
  KEEP_TMP=1 RUNS=$RUNS SQUID_RUNS=1 OUT_DIR=$SG_OUT bash "$SHARED/bench/squidguard.sh" >"$OUT_DIR/squidguard.log" 2>&1 || true
  sg_tmp=$(grep -o 'temp dir kept: [^ ]*' "$OUT_DIR/squidguard.log" | awk '{print $4}' | tail -n1)
  if [[ -n "$sg_tmp" && -f "$sg_tmp/queries.txt" ]]; then
    cat >"$WORK/ut1.yaml" <<EOF
version: 1
categories: [$SHARED/datasets/ut1]
rules: []
default: allow
EOF
    "$BIN" categories compile --policy "$WORK/ut1.yaml" 2>/dev/null
    : >"$OUT_DIR/classify-ut1.txt"
    for r in $(seq "$RUNS"); do
      /usr/bin/time -f '%e %M' -o "$WORK/u.time" "$BIN" classify --policy "$WORK/ut1.yaml" \
        <"$sg_tmp/queries.txt" >"$WORK/ut1.out"
      cat "$WORK/u.time" >>"$OUT_DIR/classify-ut1.txt"
    done
    n=$(wc -l <"$sg_tmp/queries.txt")
    # Listed queries (expect 1) must carry a category; unlisted ones none.
    wrong=$(paste "$sg_tmp/queries.expect" <(cut -f2 "$WORK/ut1.out") | awk '($1==1 && $2=="-") || ($1==0 && $2!="-")' | wc -l)
    cw=$(awk '{print $1}' "$OUT_DIR/classify-ut1.txt" | med)
    sgw=$(awk '$1=="compiled"{print $3}' "$SG_OUT/squidguard-runs.txt" | med)
    say "| squidGuard 1.6, $n queries, compiled DBs (median of $RUNS) | ${sgw} s: $(awk -v n="$n" -v w="$sgw" 'BEGIN{printf "%.0f", n/w}') lookups/s |"
    say "| \`classify\` on the same stream and UT1 lists | ${cw} s: $(awk -v n="$n" -v w="$cw" 'BEGIN{printf "%.0f", n/w}') lookups/s, $wrong answers differing from squidGuard's expectation; **$(awk -v a="$sgw" -v b="$cw" 'BEGIN{printf "%.0f", a/b}')× squidGuard** |"
    rm -rf "$sg_tmp"
  else
    say "| squidGuard | not measured: see $OUT_DIR/squidguard.log |"
  fi
fi
say ""
say "Client, proxy and lists share the machine's cores; quote ratios, not absolute times. Raw: $OUT_DIR"
