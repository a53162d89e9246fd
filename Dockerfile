# syntax=docker/dockerfile:1
#
# Every nadir binary in one small runtime image; the container command picks
# which one runs:
#
#   docker build -t nadir:0.1.0 .
#   docker run --rm nadir:0.1.0 nadir --help
#   docker run --rm --env-file nadir.env nadir:0.1.0 nadir-ingest
#
# The build is reproducible from Cargo.lock: --locked, a pinned toolchain,
# source paths remapped out of the binaries and no incremental state, so the
# same commit gives the same binaries. The runtime is distroless: glibc and
# CA certificates, no shell, no package manager, a non-root user.
#
# Both bases are build arguments, for a machine that reaches no registry
# (scripts/images builds a distroless-like base from Debian's packages):
#
#   --build-arg BUILD_IMAGE=...     the Rust toolchain image (build stage)
#   --build-arg RUNTIME_IMAGE=...   the runtime base, with a user 65532
#
# The `prebuilt` target packs binaries built on the host instead, with no
# compile in the image; the build context is the directory that holds the six
# binaries (scripts/images does this with its own context):
#
#   docker build --target prebuilt --build-arg RUNTIME_IMAGE=localhost/nadir-base:bookworm \
#     -f Dockerfile -t nadir:0.1.0 DIR-WITH-THE-BINARIES

ARG RUST_VERSION=1.95.0
ARG BUILD_IMAGE=rust:${RUST_VERSION}-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# What every nadir image is, whichever way its binaries came.
FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="nadir" \
      org.opencontainers.image.description="On-premise anomaly detection on network traffic: stage workers, dashboard and CLI" \
      org.opencontainers.image.source="https://github.com/nadir-project/nadir" \
      org.opencontainers.image.licenses="Apache-2.0"
# distroless' nonroot user; nothing is written outside mounted volumes.
USER 65532:65532
ENV NADIR_METRICS_ADDR=0.0.0.0:9090
EXPOSE 9090 8080
CMD ["nadir", "--help"]

# The host's binaries (the build context holds them); listed one by one, so
# a missing binary fails the build.
FROM runtime AS prebuilt
COPY nadir nadir-ingest nadir-transform nadir-train nadir-eval nadir-dashboard /usr/local/bin/

FROM ${BUILD_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake make perl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    SOURCE_DATE_EPOCH=0 \
    RUSTFLAGS="--remap-path-prefix=/src=/nadir --remap-path-prefix=/usr/local/cargo=/cargo"
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p nadir-cli -p nadir-ingest -p nadir-transform -p nadir-train -p nadir-eval -p nadir-dashboard \
 && mkdir -p /out \
 && for b in nadir nadir-ingest nadir-transform nadir-train nadir-eval nadir-dashboard; do \
        cp "target/release/$b" /out/; \
    done

# The default target: compiled in the build stage.
FROM runtime
COPY --from=build /out/ /usr/local/bin/
