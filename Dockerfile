# charte-proxy — multi-stage build: compile with the Rust image, run on Debian slim as a
# non-root user, with the shipped policy and categories checked at build time.

FROM rust:1-bookworm AS build
# Kerberos single sign-on (the `kerberos` feature) binds MIT's GSSAPI: its headers, and
# libclang for the binding's generator.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libkrb5-dev libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
# Cargo.toml declares the benchmark target, so its source must be present to build.
COPY benches benches
RUN cargo build --release --locked --features kerberos --bin charte-proxy

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libgssapi-krb5-2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin charte
WORKDIR /app
COPY --from=build /src/target/release/charte-proxy /usr/local/bin/charte-proxy
COPY policies policies
COPY categories categories
# A broken policy fails the image build, not the first request; the category lists are
# compiled into policies/charte.idx, mapped in place at each start and reload.
RUN ["charte-proxy", "check", "--quiet", "--policy", "policies/charte.yaml"]
RUN ["charte-proxy", "categories", "compile", "--policy", "policies/charte.yaml"]
RUN mkdir -p /app/data && chown charte:charte /app/data
USER charte
ENV CHARTE_POLICY=/app/policies/charte.yaml
# The data folder (organisation CA and its key, trace, users, administrators, unblock
# requests) outlives the container: mount a volume or a host folder here.
VOLUME ["/app/data"]
# proxy and portal (block page assets, unblock requests, PAC file). The admin listener
# (administrators' pages, /metrics, /health) is not exposed: see CMD.
EXPOSE 3128 3129
# The admin listener answers on loopback inside the container, where this check runs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/3130 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["charte-proxy"]
# In a container, loopback is unreachable from outside: the proxy and the portal listen
# on all interfaces. Workstations cannot use 0.0.0.0, so the proxy refuses to start until
# it is told the addresses they use, which it writes in the PAC file and the pages:
#   -e CHARTE_PUBLIC_PROXY=proxy.mairie.local:3128
#   -e CHARTE_PORTAL_URL=http://proxy.mairie.local:3129
# (or `public_proxy` / `portal_url` in a server file named by CHARTE_CONFIG).
# The admin listener stays on loopback inside the container (the health check runs
# there), rather than merely not exposed: its pages hold the workstations' unblock
# requests and the administrators' login, and a `-p 3130:3130` or another container on
# the same network would otherwise reach them. To scrape /metrics from another container,
# give the command again with `--admin-listen 0.0.0.0:3130`, on a network that only the
# monitoring shares.
CMD ["serve", "--listen", "0.0.0.0:3128", "--portal-listen", "0.0.0.0:3129", "--admin-listen", "127.0.0.1:3130"]
