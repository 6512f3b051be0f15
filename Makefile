# Entry points for people and CI. `make test` is the test command CI runs; `make demo` runs the operator
# locally against the test control plane and the PPIO simulator; `make` alone lists every target.
# Each target's `## name: ...` comment is what `make help` prints.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# The test control plane (tests/control-plane) is one Go program built for each Kubernetes release of
# a matrix: the newest from go.mod, the oldest the chart claims (its kubeVersion) from go.1.<minor>.mod
# and its go.1.<minor>.sum. Each build gets the tag kube1_<minor>, which selects the few files that
# differ where the two releases' library APIs do, and is stamped with its release, as Kubernetes' own
# builds are.
CONTROL_PLANE_SRC := tests/control-plane
kube_version_of = $(shell awk '$$1 == "k8s.io/kubernetes" {print $$2}' $(CONTROL_PLANE_SRC)/$(1))
kube_minor_of = $(word 2,$(subst ., ,$(1)))
version_ldflags = $(foreach pkg,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(pkg).gitVersion=$(1) -X $(pkg).gitMajor=1 -X $(pkg).gitMinor=$(call kube_minor_of,$(1)) \
	-X $(pkg).gitTreeState=clean)
# build_control_plane MODFILE,RELEASE,OUTPUT
build_control_plane = cd $(CONTROL_PLANE_SRC) && go build -modfile=$(1) -tags kube1_$(call kube_minor_of,$(2)) \
	-trimpath -ldflags "-s -w $(call version_ldflags,$(2))" -o $(CURDIR)/$(3) .

# The newest release: what `make demo`, `make bench` and the full test suite run against.
KUBE_VERSION := $(call kube_version_of,go.mod)
CONTROL_PLANE := target/control-plane/kube-control-plane
# The oldest release the chart claims: the lowest go.1.<minor>.mod. The chart's kubeVersion, its README
# and kube-score's target name this minor, and `make chart` checks that they do.
KUBE_FLOOR_MODFILE := $(notdir $(firstword $(shell ls $(CONTROL_PLANE_SRC)/go.1.*.mod | sort -V)))
KUBE_FLOOR_VERSION := $(call kube_version_of,$(KUBE_FLOOR_MODFILE))
KUBE_FLOOR := 1.$(call kube_minor_of,$(KUBE_FLOOR_VERSION))
CONTROL_PLANE_FLOOR := target/control-plane/v$(KUBE_FLOOR)/kube-control-plane

CHART := charts/ppio-gpu-operator

# The Kubernetes release kube-score judges the chart against: the oldest the chart supports and is tested on.
KUBE_SCORE_KUBERNETES := v$(KUBE_FLOOR)
# kube-score checks the chart does not follow; charts/ppio-gpu-operator/README.md says why for each.
KUBE_SCORE_IGNORED := container-image-pull-policy

# The chart's alerting rules, shipped as a plain rules file that its PrometheusRule embeds.
RULES := $(CHART)/files/prometheus-rules.yaml

# The one-node cluster (hack/node/up.sh): every part built from the newest release, the one
# tests/control-plane/go.mod pins, stamped like the control plane; etcd from the etcd server module that
# release pins.
NODE_BIN := target/node
NODE_COMPONENTS := kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy

# The documentation site: an mdBook book whose sources are docs/src/, built into target/docs/; its API
# reference is written by crdoc from the generated CRDs.
DOCS_OUT := target/docs
API_REFERENCE := docs/src/reference/api.md
API_REFERENCE_TEMPLATE := docs/api-reference.tmpl
CRDS := crds/gpu.ppio.io.yaml

# The tools of others, built from pinned sources: helm, kube-score, promlint, promtool, oci-image,
# kube-router, mdbook, crdoc.
include tools/tools.mk

.PHONY: help test test-floor control-plane control-plane-floor chart chart-score alerts lint demo crds bench \
	bench-hostile fuzz node-binaries image node e2e bench-pod faketime docs docs-check api-reference \
	api-reference-check flags-reference

## help: list the targets and what each does (what `make` alone does).
help:
	@echo "Usage: make <target> [VARIABLE=value ...]"
	@awk 'function flush() { if (name == "") return; printf "\n  %s\n", name; line = "   "; \
			n = split(text, words, " "); for (i = 1; i <= n; i++) { \
				if (length(line) + length(words[i]) > 100) { print line; line = "   " } \
				line = line " " words[i] } \
			print line; name = "" } \
		/^## [a-z0-9-]+: / { flush(); name = $$2; sub(/:$$/, "", name); text = substr($$0, length($$2) + 5); next } \
		/^## / && name != "" { text = text " " substr($$0, 4); next } \
		{ flush() } END { flush() }' $(MAKEFILE_LIST)

## test: build the control plane of both releases and the tools, check formatting and lints, lint and
## score the chart, check and unit-test the alerts, build the docs and check their links and that the
## API reference is current, run every test against the newest release, then the integration tests
## against the oldest (as test-floor does), then the end-to-end tests on the one-node cluster (as e2e
## does).
test: control-plane control-plane-floor helm promlint faketime lint chart chart-score alerts docs-check \
	api-reference-check
	cargo test --workspace --locked
	$(run_floor_tests)
	$(MAKE) --no-print-directory e2e

## test-floor: the integration tests (every one: CRDs and their admission rules, syncs, mirrors, pruning,
## Events, the election, RBAC, metrics auth) against the oldest Kubernetes the chart claims, the
## control plane built from the lowest tests/control-plane/go.1.<minor>.mod.
test-floor: control-plane-floor helm promlint promtool faketime
	$(run_floor_tests)

## faketime: libfaketime, under which the integration tests run an operator replica whose wall clock
## is days off (removals across a failover); installed with apt-get when missing (needs root).
faketime:
	@if ! find /usr/lib -path '*/faketime/libfaketime.so.1' -print -quit | grep -q .; then \
	  echo "installing libfaketime" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libfaketime >/dev/null; \
	fi

# The launcher must report the floor's release (the modfile pins it, the build stamps it), so a stale or
# misbuilt binary cannot pass for it.
define run_floor_tests
test "$$($(CONTROL_PLANE_FLOOR) --version)" = "$(KUBE_FLOOR_VERSION)" \
	|| { echo "$(CONTROL_PLANE_FLOOR) is not $(KUBE_FLOOR_VERSION): make control-plane-floor" >&2; exit 1; }
KUBE_CONTROL_PLANE_BIN=$(CURDIR)/$(CONTROL_PLANE_FLOOR) cargo test --locked --test integration
endef

## fuzz: the property tests over hostile PPIO input (page decoder, paging guards, redaction of the API
## key, the CPU time of a record with a hostile field up to the 16 MiB body cap), each with random
## cases for FUZZ_SECONDS (default 60), side by side, in a release build. A failing input is shrunk
## and saved under tests/fuzz-corpus/, which `make test` replays.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) cargo test --release --locked --test fuzz -- --ignored --test-threads=4 --nocapture fuzz_

## control-plane: build the Go launcher of etcd + kube-apiserver + garbage collector + namespace
## controller from the newest release, tests/control-plane/go.mod (cached by Go).
control-plane:
	$(call build_control_plane,go.mod,$(KUBE_VERSION),$(CONTROL_PLANE))

## control-plane-floor: build the same launcher from the oldest release the chart claims (the lowest
## tests/control-plane/go.1.<minor>.mod) into target/control-plane/v1.<minor>/ (cached by Go).
control-plane-floor:
	$(call build_control_plane,$(KUBE_FLOOR_MODFILE),$(KUBE_FLOOR_VERSION),$(CONTROL_PLANE_FLOOR))

## node-binaries: build the one-node cluster's etcd, kube-apiserver, kube-controller-manager,
## kube-scheduler, kubelet and kube-proxy into target/node/ (cached by Go, shared with control-plane).
node-binaries:
	cd $(CONTROL_PLANE_SRC) && go build -trimpath -ldflags "-s -w $(call version_ldflags,$(KUBE_VERSION))" -o $(CURDIR)/$(NODE_BIN)/ \
		$(foreach component,$(NODE_COMPONENTS),k8s.io/kubernetes/cmd/$(component)) ./etcd

## image: the operator's image from the Dockerfile and the pause image, as OCI archives in
## target/image/, built without Docker or a registry (hack/image/build.sh says how).
image: oci-image
	hack/image/build.sh

## node: start the one-node cluster in its own network namespace and open a shell inside it, with
## KUBECONFIG set; leaving the shell tears it all down. Needs root.
node: node-binaries kube-router image
	hack/node/up.sh

## e2e: the end-to-end tests (tests/e2e): the chart installed with helm on the one-node cluster.
e2e: node-binaries kube-router image helm
	cargo test --locked --test e2e --no-run
	hack/node/up.sh -- cargo test --locked --offline --test e2e -- --test-threads=1 --nocapture

## bench-pod: the operator in a pod of the one-node cluster, under the chart's default limits,
## mirroring N instances (default 10000) and then syncing with nothing changed: its container's memory,
## CPU and throttling, from its own cgroup. PAGE_SIZE (default 100).
bench-pod: node-binaries kube-router image helm
	cargo bench --locked --bench pod --no-run
	hack/node/up.sh -- cargo bench --locked --offline --bench pod

## lint: rustfmt, clippy (the end-to-end tests too, which --all-targets leaves out as they are not
## run by cargo test) and the API docs (cargo doc), warnings are errors; then the core and the PPIO
## model each built alone, as the layers they are (no HTTP client, no Kubernetes client).
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo clippy --locked --test e2e -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
	cargo clippy --locked -p ppio --lib -- -D warnings
	cargo clippy --locked -p ppio-gpu-core --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --locked -p ppio-gpu-core --no-deps
	! cargo tree --locked -p ppio-gpu-core -e normal --prefix none | grep -E '^(kube-client|kube-runtime|tokio|reqwest|hyper) ' \
		|| { echo "the core must build without a Kubernetes or HTTP client and without tokio" >&2; exit 1; }

## chart: lint the Helm chart strictly, with its defaults and with each values file in its ci/; check
## that its kubeVersion and its README claim exactly the oldest release test-floor runs on.
chart: helm
	grep -qxF 'kubeVersion: ">=$(KUBE_FLOOR).0-0"' $(CHART)/Chart.yaml \
		|| { echo "$(CHART)/Chart.yaml: kubeVersion must be \">=$(KUBE_FLOOR).0-0\", the oldest release tested" >&2; exit 1; }
	for claim in 'Needs Kubernetes $(KUBE_FLOOR) or later' 'judged for Kubernetes $(KUBE_FLOOR),'; do \
		grep -qF "$$claim" $(CHART)/README.md \
			|| { echo "$(CHART)/README.md must say \"$$claim\"" >&2; exit 1; }; \
	done
	$(HELM) lint --strict $(CHART)
	for values in $(CHART)/ci/*-values.yaml; do $(HELM) lint --strict $(CHART) --values "$$values"; done

## chart-score: kube-score the chart rendered with its defaults and with each values file in its
## ci/, printing warnings and criticals; any CRITICAL fails.
chart-score: helm kube-score
	for values in "" $(CHART)/ci/*-values.yaml; do \
		rendered=$$($(HELM) template ppio $(CHART) --namespace ppio-system $${values:+--values "$$values"}); \
		report=$$($(KUBE_SCORE) score --output-format ci --kubernetes-version $(KUBE_SCORE_KUBERNETES) \
			$(foreach check,$(KUBE_SCORE_IGNORED),--ignore-test $(check)) - <<<"$$rendered") \
			&& status=0 || status=$$?; \
		echo "kube-score, $${values:-default values}:"; \
		grep -E '^\[(WARNING|CRITICAL)\]' <<<"$$report" || echo "  no warning"; \
		[ "$$status" = 0 ] || { echo "kube-score: CRITICAL findings above" >&2; exit 1; }; \
	done

## alerts: promtool checks the chart's rules file and runs the alert unit tests in tests/alerts/
## (the integration tests check that the rendered PrometheusRule carries exactly these groups).
alerts: promtool
	$(PROMTOOL) check rules $(RULES)
	$(PROMTOOL) test rules tests/alerts/*.yaml

## crds: regenerate crds/ from the Rust types, and the chart's copy (a test fails when either is stale);
## then run make api-reference, whose check fails until the API reference follows.
crds:
	mkdir -p crds
	cargo run --quiet --bin ppio-gpu-operator -- crd > crds/gpu.ppio.io.yaml
	cp crds/gpu.ppio.io.yaml $(CHART)/crds/gpu.ppio.io.yaml

## docs: build the documentation site from docs/ into target/docs/ (open target/docs/index.html).
docs: mdbook
	$(MDBOOK) build docs --dest-dir $(CURDIR)/$(DOCS_OUT)

## docs-check: build the documentation site with every mdBook warning an error, then check that every
## link and #anchor of its pages and of the READMEs leads somewhere (tests/docs/check-links.py).
docs-check: mdbook
	log=$$($(MDBOOK) build docs --dest-dir $(CURDIR)/$(DOCS_OUT) 2>&1) || { echo "$$log" >&2; exit 1; }; \
	echo "$$log"; \
	if grep -qE '\b(WARN|ERROR)\b' <<<"$$log"; then echo "mdbook warned: the docs must build without a warning" >&2; exit 1; fi
	python3 tests/docs/check-links.py $(DOCS_OUT) README.md $(CHART)/README.md

## api-reference: write the API reference, docs/src/reference/api.md, from crds/ with crdoc.
api-reference: crdoc
	$(CRDOC) --resources $(CRDS) --template $(API_REFERENCE_TEMPLATE) --output $(API_REFERENCE)

## api-reference-check: fail when docs/src/reference/api.md is not what crdoc writes from crds/ now.
api-reference-check: crdoc
	fresh=$$(mktemp); trap 'rm -f "$$fresh"' EXIT; \
	$(CRDOC) --resources $(CRDS) --template $(API_REFERENCE_TEMPLATE) --output "$$fresh"; \
	diff -u $(API_REFERENCE) "$$fresh" \
		|| { echo "$(API_REFERENCE) is stale: run make api-reference and commit it" >&2; exit 1; }

## flags-reference: write the table of docs/src/reference/flags.md from the flags' definitions
## (src/flags.rs); a unit test fails when it is stale.
flags-reference:
	PPIO_WRITE_FLAGS_REFERENCE=1 cargo test --quiet --locked --lib -p ppio-gpu-operator flags::tests::the_flags_reference_is_current

## demo: run the operator locally against the test control plane and the PPIO simulator (Ctrl-C stops).
demo:
	hack/demo.sh

## bench: the release-built operator at scale against the test control plane and the simulator, with a
## bare server-side-apply client as yardstick; prints each number against its target. N instances
## (default 10000), PAGE_SIZE (default 100): `N=100000 make bench`.
bench: control-plane
	cargo build --release --locked --bins -p ppio-gpu-operator -p ppio-simulator
	cargo bench --locked --bench scale

## bench-hostile: the release-built operator against hostile answers of a loopback server (deep nesting,
## wide arrays, long strings, many tiny records, a huge cursor, a 14 MiB non-page), started afresh for
## each; prints its peak RSS for each against the target. A few minutes.
bench-hostile: control-plane
	cargo build --release --locked --bins -p ppio-gpu-operator
	cargo bench --locked --bench hostile
