# otaflow — build, test and run.
#   make demo   the whole mission on an embedded control plane
#   make test   every test (unit, envtest, e2e) plus the generated-code check

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

ROOT          := $(shell pwd)
BIN           := $(ROOT)/bin
ENVTEST_BIN   := $(BIN)/k8s
S3_BIN        := $(BIN)/s3
SWUPDATE_BIN  := $(BIN)/swupdate
MENDER_BIN    := $(BIN)/mender
PROMTOOL_BIN  := $(BIN)/promtool
CONTROLLER_GEN := go tool controller-gen
IMG           ?= ghcr.io/otaflow/otaflow:dev
GOTEST_FLAGS  ?= -race -count=1
BENCH_TIME    ?= 2s
export KUBEBUILDER_ASSETS := $(ENVTEST_BIN)
export OTAFLOW_SWUPDATE := $(SWUPDATE_BIN)/run
export OTAFLOW_MENDER := $(MENDER_BIN)
export OTAFLOW_PROMTOOL := $(PROMTOOL_BIN)/promtool

.PHONY: all
all: build

##@ Development

.PHONY: manifests
manifests: ## Generate CRDs and RBAC (manager and OTA server roles) from markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/..." paths="./controllers/..." paths="./cmd/manager/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=otaserver-role paths="./otaserver/..." output:rbac:artifacts:config=config/rbac/otaserver

.PHONY: generate
generate: ## Generate deepcopy methods, the device API's OpenAPI definitions and the C library's Ed25519 tables and test cases.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./api/..."
	go tool openapi-gen --output-dir otaserver/deviceapi/openapi --output-pkg github.com/otaflow/otaflow/otaserver/deviceapi/openapi \
		--output-file zz_generated.openapi.go --go-header-file hack/boilerplate.go.txt --report-filename hack/api-rule-violations.list \
		github.com/otaflow/otaflow/api/devices/v1alpha1 k8s.io/apimachinery/pkg/apis/meta/v1 k8s.io/apimachinery/pkg/runtime k8s.io/apimachinery/pkg/version
	$(MAKE) -C mcu ed25519-gen

.PHONY: verify-generated
verify-generated: ## Fail when committed generated files are stale.
	hack/verify-generated.sh

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -s -w $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: check-fmt
check-fmt:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*' -not -path './hack/envtest/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: envtest
envtest: ## Build kube-apiserver and etcd for envtest into bin/k8s (once).
	hack/build-envtest.sh $(ENVTEST_BIN)

.PHONY: s3server
s3server: ## Build versitygw, the S3 server of the object-storage tests, into bin/s3 (once).
	hack/build-s3.sh $(S3_BIN)

.PHONY: postgres
postgres: ## Install PostgreSQL 15 (apt) for the PostgreSQL store tests, when missing.
	hack/ensure-postgres.sh

.PHONY: swupdate
swupdate: ## Unpack Debian's SWUpdate client (apt-get download, no install) into bin/swupdate for the DDI tests (once).
	hack/ensure-swupdate.sh $(SWUPDATE_BIN)

.PHONY: mender
mender: ## Unpack Debian's mender-client 3.4 and mender-artifact 3.9 (apt-get download, no install) into bin/mender for the Mender device API tests (once).
	hack/ensure-mender.sh $(MENDER_BIN)

.PHONY: promtool
promtool: ## Unpack Debian's promtool (apt-get download, no install) into bin/promtool for the alert and dashboard tests (once).
	hack/ensure-promtool.sh $(PROMTOOL_BIN)

.PHONY: mcu-tools
mcu-tools: ## Install the C library's tools when missing (apt): gcc-arm-none-eabi, qemu-system-arm, clang, libmbedtls-dev.
	hack/ensure-mcu-tools.sh

.PHONY: test
test: envtest s3server postgres swupdate mender promtool mcu-tools check-fmt verify-generated vet ## Run every test.
	hack/openapi-lint.sh
	go test $(GOTEST_FLAGS) ./...

.PHONY: bench
bench: envtest build ## Run the load drivers and benchmarks, write docs/benchmarks.md (about 25 minutes; BENCH_FLAGS scales them).
	go run ./hack/bench $(BENCH_FLAGS)

.PHONY: bench-go
bench-go: ## Run the packages' Go benchmarks only (not part of make bench).
	go test -run='^$$' -bench=. -benchtime=$(BENCH_TIME) -count=5 ./internal/envelope/... ./protocol/v1/keywrap/... ./internal/devicestore/...

.PHONY: fuzz
fuzz: mcu-tools ## Run every fuzz target (Go, and the C library's under libFuzzer) for FUZZ_TIME each.
	hack/fuzz.sh $(or $(FUZZ_TIME),30s)
	$(MAKE) -C mcu fuzz FUZZ_TIME=$(or $(FUZZ_TIME),30s)

##@ Build

.PHONY: build
build: ## Build the binaries into bin/.
	go build -trimpath -o $(BIN)/ ./cmd/...

.PHONY: run
run: envtest ## Run the manager against the cluster in KUBECONFIG.
	go run ./cmd/manager --blob-dir=$(BIN)/data/blobs

.PHONY: demo
demo: envtest build ## The whole mission on an embedded control plane (about two minutes after the first build).
	go run ./hack/demo --bin-dir=$(BIN)

.PHONY: krew
krew: ## Cross-build kubectl-ota and write bin/krew/ota.yaml for a release (VERSION=vX.Y.Z).
	@test -n "$(VERSION)" || { echo "set VERSION, e.g. make krew VERSION=v0.4.0" >&2; exit 1; }
	hack/krew-manifest.sh $(VERSION)

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the container image.
	docker push $(IMG)

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the cluster in KUBECONFIG.
	kubectl apply --server-side -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRDs.
	kubectl delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: ## Deploy the operator with image IMG (OVERLAY=config/certmanager to have cert-manager issue the device certificate).
	kubectl apply --server-side -k $$(hack/overlay.sh)

.PHONY: undeploy
undeploy: ## Remove the operator.
	kubectl delete --ignore-not-found -k $${OVERLAY:-config/default}

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.PHONY: reliability
reliability: envtest build ## Kill the OTA server, the manager and the API server during rollouts; compare devices, store and status (about 5 minutes; RELIABILITY_FLAGS scales it).
	go run ./hack/reliability --bin-dir=$(BIN) $(RELIABILITY_FLAGS)

.PHONY: reliability-scaled
reliability-scaled: envtest build s3server postgres ## Three OTA server replicas on one PostgreSQL and one S3 server: SIGKILL a replica and the reporter leader, stop PostgreSQL mid-rollout (about 5 minutes; RELIABILITY_FLAGS scales it).
	go run ./hack/reliability --bin-dir=$(BIN) --scaled $(RELIABILITY_FLAGS)
