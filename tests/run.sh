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
# The identity tests' throw-away directory services (tests/common/{kdc,slapd}.rs), run
# from temp folders on free loopback ports: the packages' own services (a krb5kdc and
# kadmind for /etc/krb5kdc, a slapd on port 389) are neither used nor in the way.
# krb5-kdc: krb5kdc and kdb5_util (a real MIT KDC and its database);
# krb5-admin-server: kadmin.local (principals, keytabs);
# krb5-user: kinit, kvno, klist (clients' tickets; curl's Negotiate uses the same library);
# slapd: slapd and slapadd (a real OpenLDAP directory);
# ldap-utils: ldapsearch, ldapwhoami (checks that it answers, with StartTLS and LDAPS).
PACKAGES+=(krb5-kdc krb5-admin-server krb5-user slapd ldap-utils)
# Build dependencies of the libgssapi crate (Negotiate): the GSS-API headers and library
# (libkrb5-dev), libclang for its bindgen build script, pkg-config to find them.
PACKAGES+=(libkrb5-dev libclang-dev pkg-config)
# systemd: systemd-analyze, which verifies the shipped unit (deploy/charte-proxy.service).
PACKAGES+=(systemd)
# prometheus: its promtool checks the /metrics page (tests/metrics_format.rs). Debian ships
# promtool only in the server's package (about 96 MB installed); where systemd runs, the
# package also enables a Prometheus server on port 9090, which the tests do not use.
PACKAGES+=(prometheus)
# sarg and calamaris: the access.log analysers administrators run on Squid's log; they
# read the proxy's Squid-format trace (tests/access_log_tools.rs).
PACKAGES+=(sarg calamaris)
# haproxy: `haproxy -c` checks the example configuration for several proxies
# (deploy/haproxy.cfg, tests/cluster_docs.rs); the package's own service is not used.
PACKAGES+=(haproxy)
# postgresql: initdb, pg_ctl, pg_isready (a throw-away cluster on a free loopback port for
# the PostgreSQL store, tests/common/postgres.rs; run as the `postgres` user the package
# creates, since PostgreSQL refuses root); postgresql-client: psql, which sets it up.
PACKAGES+=(postgresql postgresql-client)
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
# With the `kerberos` feature (Negotiate against the test KDC), as the Docker image and
# the service build have it; the packages above give what it builds against.
cargo test --locked --features kerberos "$@" "${extra[@]}"
