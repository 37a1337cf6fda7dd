#!/usr/bin/env bash
# Proves, cheaply and on stable Rust, that the fuzz targets still build and that every
# committed corpus and regression input still passes through them:
#
#   - no nightly, no cargo-fuzz, no sanitizer: `cargo build` of the fuzz crate (dev
#     profile). libfuzzer-sys builds and links libFuzzer without coverage
#     instrumentation, which is enough to replay inputs;
#   - each target runs once over fuzz/corpus/<target> and fuzz/regressions/<target>
#     with `-runs=0`: libFuzzer executes every input once and exits non-zero on the first
#     panic (an invariant check failing is a panic).
#
# The fuzz crate is its own workspace (fuzz/Cargo.toml), built here in the main crate's
# target folder (or $CARGO_TARGET_DIR) with the main crate's dev profile, so that after
# the test suite only what differs is compiled (CI: about 2.8 min instead of 3.9). Its Cargo.lock is not committed: it is seeded from the main
# Cargo.lock so that the proxy's dependencies are built at the versions it ships with.
#
# Usage: fuzz/check.sh   (from anywhere)
set -euo pipefail
cd "$(dirname "$0")"

TARGETS=(host policy request_target client_hello proxy_authorization body_scanner)

# libfuzzer-sys compiles libFuzzer, which is C++: a fresh Debian machine with only the
# Rust toolchain may lack g++ (installed idempotently, as root or through sudo).
if ! command -v c++ >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing: g++"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends g++
fi

cp ../Cargo.lock Cargo.lock
# The main crate's target folder (same dev profile, same features as the test suite):
# what the suite built is reused.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/../target}"
cargo build --bins
target_dir="$CARGO_TARGET_DIR"

failed=0
for t in "${TARGETS[@]}"; do
  dirs=()
  for d in "corpus/$t" "regressions/$t"; do
    if [ -d "$d" ] && [ -n "$(ls -A "$d")" ]; then dirs+=("$d"); fi
  done
  if ((${#dirs[@]} == 0)); then
    echo "fuzz check: $t: no inputs" >&2
    failed=1
    continue
  fi
  n=$(find "${dirs[@]}" -type f | wc -l)
  log=$(mktemp)
  out=$(mktemp -d)
  # -runs=0: execute each input once, mutate nothing; the directories are only read.
  # A failing input is copied to $out (not into the work tree).
  if "$target_dir/debug/$t" -runs=0 -timeout=60 -rss_limit_mb=2048 \
    -artifact_prefix="$out/" "${dirs[@]}" >"$log" 2>&1; then
    echo "fuzz check: $t: $n inputs replayed, ok"
  else
    echo "fuzz check: $t: FAILED on replay of ${dirs[*]}" >&2
    grep -A4 -E "panicked at|ERROR: libFuzzer" "$log" | head -n 30 >&2 || tail -n 30 "$log" >&2
    for f in "$out"/*; do
      [ -f "$f" ] || continue
      for c in $(find "${dirs[@]}" -type f); do
        if cmp -s "$f" "$c"; then echo "failing input: fuzz/$c" >&2; fi
      done
    done
    failed=1
  fi
  rm -rf "$log" "$out"
done
exit "$failed"
