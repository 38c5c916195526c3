# syntax=docker/dockerfile:1
#
# remarket image: `docker build -t ghcr.io/remarket/remarket:0.1.0 .` (BuildKit, the default
# builder since Docker 23, for the cache mounts). The tag is Cargo.toml's version; deploy/
# refers to exactly that tag. See deploy/README.md ("Image").

# --- build -------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder

# rdkafka-sys builds librdkafka from source with its ./configure script and make (no cmake:
# the crate does not use rdkafka's `cmake-build` feature). Feature `ssl` links the system
# OpenSSL and the default `libz` the system zlib (both found through pkg-config); `zstd` is
# compiled in statically by zstd-sys, as is mimalloc. rust:*-bookworm (buildpack-deps) already
# ships all of these; they are listed so that the requirement is explicit.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ make pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what `cargo build --release --bin remarket` reads. benches/ is needed because Cargo.toml
# declares [[bench]] targets and cargo refuses a manifest whose targets are missing.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches

# Cache mounts keep the registry and target/ between builds on the same builder, so a change
# in src/ recompiles remarket, not librdkafka and every dependency. The binary is copied out of
# the cache mount (which is not part of the image) in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin remarket \
 && install -D -m 0755 target/release/remarket /out/remarket

# --- runtime -----------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="remarket" \
      org.opencontainers.image.description="Live remarketing engine: Kafka events -> event-time campaign state machines -> TikTok audiences" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/remarket/remarket"

# The shared libraries the binary links besides libc6/libgcc-s1 (which every Debian image
# has): libssl.so.3 + libcrypto.so.3 (libssl3) and libz.so.1 (zlib1g) — tests/deploy.rs checks
# this list against `ldd`. ca-certificates: the CA bundle librdkafka's OpenSSL uses for Kafka
# over TLS (the TikTok client, rustls, carries its own webpki roots).
# The user is numeric (65532, deploy/base/deployment.yaml's runAsUser) so that the kubelet can
# enforce runAsNonRoot without looking it up.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 remarket \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin remarket

COPY --from=builder /out/remarket /usr/local/bin/remarket

USER 65532:65532
# /metrics, /healthz, /readyz ([http] listen).
EXPOSE 9898
# remarket handles SIGTERM itself (stop consuming, flush, commit, exit 0) and starts no child
# processes, so it runs as PID 1 without an init.
ENTRYPOINT ["remarket"]
CMD ["run", "--config", "/etc/remarket/remarket.toml"]
