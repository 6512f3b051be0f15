#!/usr/bin/env bash
# Builds the operator's image and the pod sandbox ("pause") image as OCI archives, with no container
# engine and no registry, for the local cluster (`make image`; `make e2e` imports them into its
# containerd):
#
#   target/image/ppio-gpu-operator.oci.tar   the Dockerfile's final stage, carried out by
#                                            tools/oci-image on: the Debian 12 packages that
#                                            distroless/cc-debian12 is made of (base-packages), and
#                                            the release binary built here as the Dockerfile's
#                                            builder stage builds it (same target, same strip);
#   target/image/pause.oci.tar               Kubernetes' own build/pause (its pause.c, compiled as
#                                            its Makefile does, and its Dockerfile), from the
#                                            k8s.io/kubernetes module tests/control-plane pins.
#
# Also writes target/image/images.env (the two image names) and target/image/base-packages.lock (the
# exact package versions in the base). Needs root for apt-get only when the packages are not cached.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/hack/image
out=$root/target/image
tool=$root/target/tools/oci-image
mkdir -p "$out"

die() { echo "make image: $*" >&2; exit 1; }
[ -x "$tool" ] || die "$tool is missing (make oci-image builds it)"

# The Dockerfile's base and its builder's Rust release: a local build that differs from them would
# not be the image users build.
base_image=$(awk 'toupper($1) == "FROM" { base = $2 } END { print base }' "$root/Dockerfile")
rust_wanted=$(awk -F= '/^ARG RUST_VERSION=/ { print $2 }' "$root/Dockerfile")
rust_here=$(rustc --version | awk '{ print $2 }')
case "$rust_here" in
  "$rust_wanted" | "$rust_wanted".*) ;;
  *) die "the Dockerfile builds with Rust $rust_wanted, this machine has $rust_here" ;;
esac
grep -q '^VERSION_CODENAME=bookworm$' /etc/os-release \
  || die "the image's binary must be linked against Debian 12 (bookworm)'s glibc, as in the Dockerfile's rust:*-bookworm builder"

version=$(cargo metadata --no-deps --format-version 1 --manifest-path "$root/Cargo.toml" \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "ppio-gpu-operator"))')
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
image=ghcr.io/ppio/ppio-gpu-operator:$version

# --- The base: distroless/cc-debian12's packages, unpacked. -------------------------------------
packages=$(grep -v '^#' "$here/base-packages" | grep -v '^$')
debs=$out/debs
mkdir -p "$debs"
missing=()
for p in $packages; do
  compgen -G "$debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "make image: downloading ${missing[*]}"
  (cd "$debs" && { apt-get download "${missing[@]}" 2>/dev/null \
    || { apt-get update -qq && apt-get download "${missing[@]}"; }; })
fi
base=$out/base-rootfs
rm -rf "$base" && mkdir -p "$base"
: > "$out/base-packages.lock"
for p in $packages; do
  deb=$(compgen -G "$debs/${p}_*.deb" | sort -V | tail -1)
  dpkg-deb -x "$deb" "$base"
  dpkg-deb --show --showformat='${Package}=${Version}\n' "$deb" >> "$out/base-packages.lock"
done
# What distroless adds beside the packages: its users and groups, name service switch, a CA bundle
# (update-ca-certificates' output), /tmp and the nonroot home.
mkdir -p "$base/etc/ssl/certs" "$base/tmp" "$base/home/nonroot" "$base/root"
chmod 1777 "$base/tmp"
chmod 0700 "$base/home/nonroot" "$base/root"
cat > "$base/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat > "$base/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
echo 'hosts: files dns' > "$base/etc/nsswitch.conf"
find "$base/usr/share/ca-certificates" -name '*.crt' | sort | xargs cat > "$base/etc/ssl/certs/ca-certificates.crt"
rm -rf "$base/usr/share/doc" "$base/usr/share/man" "$base/usr/share/lintian"

# --- The builder stage's output: the release binary, stripped as the Dockerfile strips it. -------
builder=$out/builder
cargo build --release --locked --bin ppio-gpu-operator --manifest-path "$root/Cargo.toml"
target_dir=$(cargo metadata --no-deps --format-version 1 --manifest-path "$root/Cargo.toml" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
rm -rf "$builder" && mkdir -p "$builder/out"
install -m 0755 "$target_dir/release/ppio-gpu-operator" "$builder/out/ppio-gpu-operator"
strip --strip-all "$builder/out/ppio-gpu-operator"
"$builder/out/ppio-gpu-operator" --version >/dev/null

"$tool" build --dockerfile "$root/Dockerfile" --context "$root" \
  --base "$base_image=$base" --base-config "$base_image=$here/distroless-cc-nonroot.json" \
  --stage "builder=$builder" \
  --owner /home/nonroot=65532:65532 \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  --tag "$image" --output "$out/ppio-gpu-operator.oci.tar"

# --- The pause image, from Kubernetes' build/pause. --------------------------------------------
kube=$(cd "$root/tests/control-plane" && go mod download -json k8s.io/kubernetes \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
pause_tag=$(awk '$1 == "TAG" && $2 == "?=" { print $3 }' "$kube/build/pause/Makefile")
[ -n "$pause_tag" ] || die "cannot read the pause image's tag from $kube/build/pause/Makefile"
pause_image=registry.k8s.io/pause:$pause_tag
pause_ctx=$out/pause-context
rm -rf "$pause_ctx" && mkdir -p "$pause_ctx/bin"
# Its Makefile's CFLAGS: -Os -Wall -Werror -static -DVERSION=v$(TAG)-$(REV).
gcc -Os -Wall -Werror -static -DVERSION="v$pause_tag-ppio" -o "$pause_ctx/bin/pause-linux-amd64" \
  "$kube/build/pause/linux/pause.c"
"$tool" build --dockerfile "$kube/build/pause/Dockerfile" --context "$pause_ctx" \
  --build-arg BASE=scratch --build-arg ARCH=amd64 \
  --tag "$pause_image" --output "$out/pause.oci.tar"

cat > "$out/images.env" <<EOF
OPERATOR_IMAGE=$image
PAUSE_IMAGE=$pause_image
EOF
echo "make image: $out/ppio-gpu-operator.oci.tar ($image), $out/pause.oci.tar ($pause_image)"
