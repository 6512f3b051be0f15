# syntax=docker/dockerfile:1
#
# The ppio-gpu-operator image: one static (musl) binary on distroless/static, as user 65532.
#
#   docker build -t ghcr.io/ppio/ppio-gpu-operator:0.1.0 .
#   docker buildx build --platform linux/amd64 -t ghcr.io/ppio/ppio-gpu-operator:0.1.0 --load .
#
# linux/amd64 only: the builder cross-links with Debian's musl-gcc, which targets x86_64. No CA bundle
# is needed at run time: the PPIO client (reqwest) uses rustls with the webpki roots compiled in, and
# in a cluster the API server is verified with the ServiceAccount's ca.crt. The crypto is ring, whose C
# and assembly parts compile with musl-gcc.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGET=x86_64-unknown-linux-musl
RUN test "$(dpkg --print-architecture)" = amd64 \
      || { echo "build for linux/amd64 (docker buildx build --platform linux/amd64 ...)" >&2; exit 1; } \
 && apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$TARGET"
# ring's build script compiles C with this; the stripped release binary is ~half the size.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
WORKDIR /src

# Dependencies in a layer of their own, rebuilt only when Cargo.toml or Cargo.lock change: build a stub
# crate with the real manifests, then forget the stub's own artifacts so the real sources rebuild. The
# workspace's other member, the PPIO simulator, only needs its manifest (and empty sources) for Cargo
# to load the workspace: it is a dev-dependency and never part of the image.
COPY Cargo.toml Cargo.lock ./
COPY simulator/Cargo.toml simulator/Cargo.toml
RUN mkdir -p src simulator/src \
 && touch simulator/src/lib.rs \
 && echo 'fn main() {}' > simulator/src/main.rs \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --target "$TARGET" --bin ppio-gpu-operator \
 && rm -rf src \
      "target/$TARGET/release/.fingerprint/ppio-gpu-operator-"* \
      "target/$TARGET/release/deps/ppio_gpu_operator-"* \
      "target/$TARGET/release/deps/libppio_gpu_operator-"* \
      "target/$TARGET/release/ppio-gpu-operator"

COPY src ./src
RUN cargo build --release --locked --target "$TARGET" --bin ppio-gpu-operator \
 && install -D -m 0755 "target/$TARGET/release/ppio-gpu-operator" /out/ppio-gpu-operator \
 && /out/ppio-gpu-operator --version

FROM gcr.io/distroless/static-debian12:nonroot
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
