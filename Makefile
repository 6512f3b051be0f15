# Entry points for people and CI. `make test` is the test command CI runs; `make demo` runs the operator
# locally against the test control plane and the PPIO simulator.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

# The Kubernetes release the test control plane is built from (tests/control-plane/go.mod pins it).
KUBE_VERSION := $(shell awk '$$1 == "k8s.io/kubernetes" {print $$2}' tests/control-plane/go.mod)
KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))
CONTROL_PLANE := target/control-plane/kube-control-plane
VERSION_LDFLAGS := $(foreach pkg,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(pkg).gitVersion=$(KUBE_VERSION) -X $(pkg).gitMajor=1 -X $(pkg).gitMinor=$(KUBE_MINOR) \
	-X $(pkg).gitTreeState=clean)

.PHONY: test control-plane lint demo crds

## test: build the control plane, check formatting and lints, run every test.
test: control-plane lint
	cargo test --all-targets --locked

## control-plane: build the Go launcher of etcd + kube-apiserver + garbage collector (cached by Go).
control-plane:
	cd tests/control-plane && go build -trimpath -ldflags "-s -w $(VERSION_LDFLAGS)" -o ../../$(CONTROL_PLANE) .

## lint: rustfmt and clippy, warnings are errors.
lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

## crds: regenerate crds/ from the Rust types (a test fails when it is stale).
crds:
	mkdir -p crds
	cargo run --quiet --bin ppio-gpu-operator -- crd > crds/gpu.ppio.io.yaml

## demo: run the operator locally against the test control plane and the PPIO simulator (Ctrl-C stops).
demo:
	hack/demo.sh
