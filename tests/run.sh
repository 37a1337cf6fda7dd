#!/usr/bin/env bash
# The test command: installs, idempotently, what the suite needs beyond the Rust
# toolchain on a fresh Debian machine, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the integration tests drive (real clients against real listeners):
# curl; openssl (an upstream that only speaks TLS 1.1); Chromium and NSS's certutil (a
# real browser trusting the test organisation CA), and ChromeDriver to drive it through
# the unblock flow (WebDriver).
PACKAGES=(curl ca-certificates openssl chromium chromium-driver libnss3-tools)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Tests that need ../shared are #[ignore]d with their reason (cargo counts them as
# ignored); run them when it is beside the repository, as CI has it.
extra=()
if [ -d ../shared/datasets/ut1 ]; then
  has_sep=0
  for a in "$@"; do [ "$a" = "--" ] && has_sep=1; done
  if ((has_sep)); then extra=(--include-ignored); else extra=(-- --include-ignored); fi
fi
cargo test --locked "$@" "${extra[@]}"
