# syntax=docker/dockerfile:1
#
# The ppio-gpu-operator image: the glibc release binary on distroless/cc-debian12, as user 65532.
#
#   docker build -t ghcr.io/ppio/ppio-gpu-operator:0.1.0 .
#   docker buildx build --platform linux/amd64 -t ghcr.io/ppio/ppio-gpu-operator:0.1.0 --load .
#
# Why glibc on distroless/cc rather than a static musl binary on distroless/static: `make image` builds
# the equivalent image without Docker (tools/oci-image carries out this file's final stage) for the
# end-to-end tests, on CI's machine kind, whose Rust has no musl target and cannot get one. It links
# the binary against Debian 12's glibc, as this builder does, and unpacks the Debian 12 packages
# distroless/cc-debian12 is made of (hack/image/base-packages) as the base. One target, one base, one
# user and one entrypoint, whichever way the image is built.
#
# linux/amd64 only. No CA bundle is needed at run time: the PPIO client (reqwest) uses rustls with the
# webpki roots compiled in, and in a cluster the API server is verified with the ServiceAccount's
# ca.crt.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
RUN test "$(dpkg --print-architecture)" = amd64 \
      || { echo "build for linux/amd64 (docker buildx build --platform linux/amd64 ...)" >&2; exit 1; }
ENV CARGO_TERM_COLOR=never
WORKDIR /src

# Dependencies in a layer of their own, rebuilt only when a manifest or Cargo.lock changes: build stub
# crates with the real manifests, then forget the stubs' own artifacts so the real sources rebuild. The
# operator is three crates (the PPIO client in ppio/, the pure core in core/, the operator in src/);
# the workspace's other members, the PPIO simulator and the test support, only need their manifests
# (and empty sources) for Cargo to load the workspace: they are dev-dependencies, never in the image.
COPY Cargo.toml Cargo.lock ./
COPY ppio/Cargo.toml ppio/Cargo.toml
COPY core/Cargo.toml core/Cargo.toml
COPY simulator/Cargo.toml simulator/Cargo.toml
COPY test-support/Cargo.toml test-support/Cargo.toml
RUN mkdir -p src ppio/src core/src simulator/src test-support/src \
 && touch ppio/src/lib.rs core/src/lib.rs simulator/src/lib.rs test-support/src/lib.rs \
 && echo 'fn main() {}' > simulator/src/main.rs \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin ppio-gpu-operator \
 && rm -rf src ppio/src core/src \
      target/release/.fingerprint/ppio-gpu-operator-* target/release/.fingerprint/ppio-* \
      target/release/deps/ppio_gpu_operator-* target/release/deps/libppio_gpu_operator-* \
      target/release/deps/ppio-* target/release/deps/libppio-* \
      target/release/deps/ppio_gpu_core-* target/release/deps/libppio_gpu_core-* \
      target/release/ppio-gpu-operator

# The stripped release binary is about half the size.
COPY ppio/src ./ppio/src
COPY core/src ./core/src
COPY src ./src
RUN cargo build --release --locked --bin ppio-gpu-operator \
 && install -D -m 0755 target/release/ppio-gpu-operator /out/ppio-gpu-operator \
 && strip --strip-all /out/ppio-gpu-operator \
 && /out/ppio-gpu-operator --version

# The final stage is what tools/oci-image carries out for `make image`: FROM, ARG, LABEL, COPY
# --from=builder, USER, EXPOSE, ENTRYPOINT and CMD only (no RUN).

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ppio-gpu-operator" \
      org.opencontainers.image.description="Kubernetes operator that mirrors PPIO GPU cloud instances into a cluster as GpuInstance objects" \
      org.opencontainers.image.source="https://github.com/ppio/ppio-gpu-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/ppio-gpu-operator /ppio-gpu-operator
USER 65532:65532
# /healthz, /readyz and /metrics.
EXPOSE 8080
ENTRYPOINT ["/ppio-gpu-operator"]
CMD ["run"]
