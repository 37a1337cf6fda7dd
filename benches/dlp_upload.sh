#!/usr/bin/env bash
# benches/dlp_upload.sh - upload throughput through charte-proxy with the upload checks
# (DLP) on and off, in the same run, next to a direct upload; loopback only.
#
#   benches/dlp_upload.sh                  # builds the release binary
#   CHARTE_BIN=path ROUNDS=3 UPLOADS=20 benches/dlp_upload.sh
#
# Starts a sink (Python, reads every body and answers "ok"), then two proxies on the
# same binary: one with the shipped `content` section and a `content` rule that every
# upload meets (the body is read, held up to 4 MiB and scanned), one with the same
# policy minus that rule (the body is streamed unread). Each round uploads UPLOADS
# times a SIZE_MIB multipart body of ordinary French text with numbers that are no
# valid identifiers (nothing is found: every upload goes through), with curl, through
# each proxy and directly, in turn. Prints MiB/s for each and the DLP-on / DLP-off
# ratio (the issue's target: at most 20 % loss).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
UPLOADS=${UPLOADS:-20}
SIZE_MIB=${SIZE_MIB:-10}
OUT=${OUT_DIR:-$(mktemp -d /tmp/dlp-bench.XXXXXX)}
log() { echo "[dlp] $*" >&2; }

for c in curl python3; do
  command -v "$c" >/dev/null || { SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq "$c" >/dev/null; }
done
if [[ -z "${CHARTE_BIN:-}" ]]; then
  (cd "$REPO" && cargo build --release --quiet)
  CHARTE_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/charte-proxy
fi
CHARTE_BIN=$(realpath "$CHARTE_BIN")

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# The sink.
SINK=$(free_port)
cat >"$OUT/sink.py" <<'EOF'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        left = int(self.headers.get("Content-Length", "0"))
        while left > 0:
            b = self.rfile.read(min(left, 1 << 20))
            if not b:
                break
            left -= len(b)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
python3 "$OUT/sink.py" "$SINK" & pids+=($!)

# The body: ordinary text, numbers without a valid key.
python3 - "$OUT/body.txt" "$SIZE_MIB" <<'EOF'
import random, sys
random.seed(7)
words = ("le la les des une un de du service mairie agent dossier réunion budget "
         "délibération conseil municipal commune voirie école état civil marché "
         "public travaux numéro référence facture montant total").split()
out, size = [], int(sys.argv[2]) << 20
n = 0
while n < size:
    line = " ".join(random.choice(words) for _ in range(12))
    line += " réf. %d %06d\n" % (random.randrange(10**5), random.randrange(10**6))
    out.append(line); n += len(line.encode())
open(sys.argv[1], "w").write("".join(out))
EOF

# Two policies: the shipped content section, with and without a rule that reads bodies.
mkdir -p "$OUT/on" "$OUT/off"
content=$(sed -n '/^content:/,/^rules:/p' "$REPO/policies/charte.yaml" | sed '$d')
for mode in on off; do
  {
    echo "version: 1"
    echo "internal_sites: [127.0.0.0/8]"
    echo "$content"
    echo "rules:"
    if [[ $mode == on ]]; then
      echo "  - id: fuite-de-donnees"
      echo "    content: [diffusion-restreinte, donnees-de-sante, nir, iban, carte-bancaire]"
      echo "    action: block"
      echo "    reason: bench"
    else
      echo "  - id: rien"
      echo "    domains: [never.invalid]"
      echo "    action: block"
      echo "    reason: bench"
    fi
    echo "default: allow"
  } >"$OUT/$mode/policy.yaml"
  "$CHARTE_BIN" check --policy "$OUT/$mode/policy.yaml" >/dev/null
done

declare -A PORT
for mode in on off; do
  PORT[$mode]=$(free_port)
  (cd "$OUT/$mode" && exec "$CHARTE_BIN" serve --policy policy.yaml --data-dir data \
     --listen "127.0.0.1:${PORT[$mode]}" --portal-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
     --no-inspect --host sink.bench.test=127.0.0.1 >stdout.log 2>stderr.log) & pids+=($!)
done
for mode in on off; do
  up=""
  for _ in $(seq 100); do
    if curl -s -o /dev/null -x "127.0.0.1:${PORT[$mode]}" "http://sink.bench.test:$SINK/" 2>/dev/null; then
      up=yes; break
    fi
    sleep 0.1
  done
  [[ -n $up ]] || { cat "$OUT/$mode/stderr.log" >&2; log "proxy $mode did not start"; exit 1; }
done
# The check is on: a body with a marking is refused by `on`, let through by `off`.
for mode in on off; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -x "127.0.0.1:${PORT[$mode]}" \
    --data-binary 'Note. Diffusion restreinte.' "http://sink.bench.test:$SINK/upload")
  log "a marked body through DLP $mode: $code"
  [[ $mode == on && $code == 403 || $mode == off && $code == 200 ]] || { log "unexpected"; exit 1; }
done

# Seconds for UPLOADS uploads through $1 (a proxy address, or "" for direct).
run() {
  local via=$1 start end
  start=$(date +%s.%N)
  for _ in $(seq "$UPLOADS"); do
    if [[ -n $via ]]; then
      curl -s -f -o /dev/null -H 'Expect:' -x "$via" -F "f=@$OUT/body.txt;type=text/plain" \
        "http://sink.bench.test:$SINK/upload" || { log "upload through $via failed"; exit 1; }
    else
      curl -s -f -o /dev/null -H 'Expect:' -F "f=@$OUT/body.txt;type=text/plain" \
        "http://127.0.0.1:$SINK/upload" || { log "direct upload failed"; exit 1; }
    fi
  done
  end=$(date +%s.%N)
  python3 -c "print($end - $start)"
}

mib=$((UPLOADS * SIZE_MIB))
echo "| round | direct MiB/s | DLP off MiB/s | DLP on MiB/s | on / off |"
echo "|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  d=$(run "") || exit 1
  off=$(run "127.0.0.1:${PORT[off]}") || exit 1
  on=$(run "127.0.0.1:${PORT[on]}") || exit 1
  python3 -c "
d,off,on,m=$d,$off,$on,$mib
print(f'| $r | {m/d:.0f} | {m/off:.0f} | {m/on:.0f} | {off/on:.2f} |')"
done
log "raw files in $OUT"
