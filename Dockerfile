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
# proxy, portal (block page assets, unblock requests, PAC file), admin (metrics, health)
EXPOSE 3128 3129 3130
ENTRYPOINT ["charte-proxy"]
# In a container, loopback is unreachable from outside: listen on all interfaces and
# publish only what the network needs (the admin port usually stays internal).
CMD ["serve", "--listen", "0.0.0.0:3128", "--portal-listen", "0.0.0.0:3129", "--admin-listen", "0.0.0.0:3130"]
