# The tools of others the project builds from pinned sources into target/tools/: each Go tool from the
# go.mod of its folder here (cached by Go), mdBook from crates.io at the version tools/mdbook/version
# names. Included by the Makefile.

# helm, built from the Go module that pins it (tools/helm/go.mod) and stamped as helm's own release
# builds are: its version, and the Kubernetes minor of its client-go as the cluster version that
# `helm template` and `helm lint` assume (unstamped, helm assumes Kubernetes 1.20 and refuses the
# chart's kubeVersion).
HELM := target/tools/helm
HELM_VERSION := $(shell awk '$$1 == "helm.sh/helm/v3" {print $$2}' tools/helm/go.mod)
HELM_KUBE_MINOR := $(word 2,$(subst ., ,$(shell awk '$$1 == "k8s.io/client-go" {print $$2}' tools/helm/go.mod)))
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	$(foreach pkg,chartutil lint/rules,-X helm.sh/helm/v3/pkg/$(pkg).k8sVersionMajor=1 \
	-X helm.sh/helm/v3/pkg/$(pkg).k8sVersionMinor=$(HELM_KUBE_MINOR))

# kube-score, built from the Go module that pins it (tools/kube-score/go.mod), stamped with its version.
KUBE_SCORE := target/tools/kube-score
KUBE_SCORE_VERSION := $(shell awk '$$1 == "github.com/zegl/kube-score" {print $$2}' tools/kube-score/go.mod)

# promlint: a small Go program (tools/promlint) around client_golang's promlint, pinned by its go.mod;
# the integration tests lint the operator's /metrics with it.
PROMLINT := target/tools/promlint

# promtool, built from the Prometheus module that tools/promtool/go.mod pins and stamped with its
# release: Prometheus tags its Go module v0.3MM.P for release 3.MM.P.
PROMTOOL := target/tools/promtool
PROMETHEUS_MODULE_VERSION := $(shell awk '$$1 == "github.com/prometheus/prometheus" {print $$2}' tools/promtool/go.mod)
PROMETHEUS_VERSION := $(shell awk -v v=$(PROMETHEUS_MODULE_VERSION) 'BEGIN { split(substr(v, 2), p, "."); \
	printf "%d.%d.%s", int(p[2] / 100), p[2] % 100, p[3] }')
PROMTOOL_LDFLAGS := -s -w -X github.com/prometheus/common/version.Version=$(PROMETHEUS_VERSION) \
	-X github.com/prometheus/common/version.Revision=$(PROMETHEUS_MODULE_VERSION)

# oci-image: carries out the Dockerfile's final stage without a container engine (tools/oci-image).
OCI_IMAGE := target/tools/oci-image

# kube-router, whose network-policy controller enforces NetworkPolicies on the one-node cluster.
KUBE_ROUTER := target/tools/kube-router

# mdBook, which builds the documentation site (docs/), installed from crates.io with cargo at the
# version tools/mdbook/version pins, with the crate's own Cargo.lock, without its `serve` and `watch`
# features (a web server and a file watcher the build does not need).
MDBOOK_VERSION := $(shell cat tools/mdbook/version)
MDBOOK_ROOT := target/tools/mdbook
MDBOOK := $(MDBOOK_ROOT)/bin/mdbook

# crdoc, which writes the API reference (docs/src/reference/api.md) from crds/: fybrik's crdoc, whose
# sources tools/crdoc holds (its README says which release and why), its dependencies pinned by its go.mod.
CRDOC := target/tools/crdoc

.PHONY: helm kube-score promlint promtool oci-image kube-router mdbook crdoc

## helm: build helm from tools/helm/go.mod into target/tools/helm (cached by Go).
helm:
	cd tools/helm && CGO_ENABLED=0 go build -trimpath -ldflags "$(HELM_LDFLAGS)" -o ../../$(HELM) helm.sh/helm/v3/cmd/helm

## kube-score: build kube-score from tools/kube-score/go.mod into target/tools/kube-score (cached by Go).
kube-score:
	cd tools/kube-score && CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X main.version=$(KUBE_SCORE_VERSION)" \
		-o ../../$(KUBE_SCORE) github.com/zegl/kube-score/cmd/kube-score

## promlint: build tools/promlint (client_golang's metric linter) into target/tools/promlint (cached by Go).
promlint:
	cd tools/promlint && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o ../../$(PROMLINT) .

## promtool: build promtool from tools/promtool/go.mod into target/tools/promtool (cached by Go).
promtool:
	cd tools/promtool && CGO_ENABLED=0 go build -trimpath -ldflags "$(PROMTOOL_LDFLAGS)" \
		-o ../../$(PROMTOOL) github.com/prometheus/prometheus/cmd/promtool

## oci-image: build tools/oci-image into target/tools/oci-image (cached by Go).
oci-image:
	cd tools/oci-image && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o ../../$(OCI_IMAGE) .

## kube-router: build kube-router from tools/kube-router/go.mod into target/tools/kube-router (cached by
## Go): the one-node cluster runs its network-policy controller. Its v2.1.0 has reported security flaws;
## it serves only as a test fixture inside the node's own network namespace.
kube-router:
	cd tools/kube-router && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(CURDIR)/$(KUBE_ROUTER) \
		github.com/cloudnativelabs/kube-router/v2/cmd/kube-router

## mdbook: install mdBook, the version tools/mdbook/version pins, into target/tools/mdbook/ (a few
## minutes the first time; skipped while that version is there).
mdbook:
	@if [ "$$($(MDBOOK) --version 2>/dev/null)" != "mdbook v$(MDBOOK_VERSION)" ]; then \
		echo "installing mdbook $(MDBOOK_VERSION) into $(MDBOOK_ROOT)" >&2; \
		cargo install --locked --quiet --no-default-features --features search \
			--version $(MDBOOK_VERSION) --root $(CURDIR)/$(MDBOOK_ROOT) mdbook; \
	fi

## crdoc: build crdoc from tools/crdoc into target/tools/crdoc (cached by Go).
crdoc:
	cd tools/crdoc && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o ../../$(CRDOC) .
