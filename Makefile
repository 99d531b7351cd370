# provision — make targets. `make demo` and `make test` do all their own setup.
GO        ?= go
BIN       := bin/provision
PLAN      ?= examples/local.yaml
# Packages whose tests need nothing but Go; the rest need dockerd.
export PROVISION_REQUIRE_DOCKER ?= 1

.PHONY: all build deps image demo down demo-kubernetes down-kubernetes kube-artifacts demo-multicloud down-multicloud test unit e2e vet lint fmt clean pulumi-tools e2e-pulumi pulumi-sdk autoscaler-image bench

all: build

# Static (no cgo): the same binary runs in the autoscaler's image.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/provision
	$(GO) build -o bin/cloudsim ./cmd/cloudsim

deps:
	./scripts/install-deps.sh

image: deps build
	$(BIN) image build

## autoscaler-image: the autoscaler's image (this provision binary, no registry)
## as bin/provision-autoscaler.tar, loaded into the local dockerd when one runs.
## `provision autoscale deploy PLAN` builds and loads it on the managers itself.
autoscaler-image: build
	$(BIN) image autoscaler --file bin/provision-autoscaler.tar
	@if docker info >/dev/null 2>&1; then docker load -i bin/provision-autoscaler.tar; fi

## demo: install what is needed, build the node image, and bring up examples/local.yaml
demo: image
	$(BIN) up $(PLAN)
	$(BIN) ssh $(PLAN) managers -- docker node ls

down: build
	$(BIN) down $(PLAN)

K8S_PLAN := examples/kubernetes.yaml
K8S_KUBECONFIG := .provision/k8s/kubeconfig

## demo-kubernetes: install what is needed and bring up examples/kubernetes.yaml
## (kubeadm: 1 control plane + 2 workers, offline). The first run builds
## Kubernetes from the module proxy (~15 min) and caches it.
demo-kubernetes: image
	$(BIN) up $(K8S_PLAN)
	$(BIN) kubeconfig $(K8S_PLAN) --file $(K8S_KUBECONFIG)
	@# The bundle's own kubectl: nothing else to install.
	dir=$$($(BIN) artifacts $(K8S_PLAN) | tail -n 1) && $$dir/bin/kubectl --kubeconfig $(K8S_KUBECONFIG) get nodes -o wide

down-kubernetes: build
	$(BIN) down $(K8S_PLAN)

SIM_ENV := .provision/cloudsim.env
SIM_PID := .provision/cloudsim.pid
MULTI   := examples/multicloud.yaml

## demo-multicloud: start cloudsim (EC2, GCE, OpenStack emulators whose instances
## are real local hosts) and bring up examples/multicloud.yaml across all three
demo-multicloud: image
	@mkdir -p .provision
	@if [ -f $(SIM_PID) ] && kill -0 $$(cat $(SIM_PID)) 2>/dev/null; then echo "cloudsim already running (pid $$(cat $(SIM_PID)))"; \
	else rm -f $(SIM_ENV); nohup bin/cloudsim --backing docker --env-file $(SIM_ENV) >.provision/cloudsim.log 2>&1 & echo $$! > $(SIM_PID); \
	  for i in $$(seq 1 50); do [ -s $(SIM_ENV) ] && break; sleep 0.2; done; \
	  [ -s $(SIM_ENV) ] || { echo "cloudsim did not start; see .provision/cloudsim.log"; exit 1; }; fi
	set -a && . ./$(SIM_ENV) && set +a && $(BIN) up $(MULTI) && \
	  $(BIN) ssh $(MULTI) managers -- docker node ls
	@echo "cloudsim API calls:"; for p in $$(grep -o 'http://127.0.0.1:[0-9]*' $(SIM_ENV) | sort -u); do curl -s $$p/_sim/calls; done

## down-multicloud: delete every instance of the multicloud demo, then stop cloudsim
down-multicloud: build
	set -a && . ./$(SIM_ENV) && set +a && $(BIN) down $(MULTI)
	-kill $$(cat $(SIM_PID)) && rm -f $(SIM_PID) $(SIM_ENV)

## kube-artifacts: build the Kubernetes binaries and images from the module
## proxy into ~/.cache/provision/kubernetes (about 15 min cold, a second when
## cached), for the Kubernetes e2e tests and examples/kubernetes.yaml
kube-artifacts: build
	$(BIN) artifacts $(K8S_PLAN)

## test: every test, unit and end-to-end (installs and starts docker when missing)
## The node image is built once up front so parallel test packages share it;
## so are the pulumi tools, for e2e's TestPulumiExample, and the Kubernetes
## artifacts, for e2e's TestKubernetes*.
test: deps vet lint image pulumi-tools kube-artifacts
	$(PULUMI_BIN_SH); PROVISION_PULUMI_BIN=$$bin $(GO) test -count=1 -timeout 85m ./...

unit:
	PROVISION_REQUIRE_DOCKER= $(GO) test -count=1 -short ./...

e2e: deps image
	$(GO) test -count=1 -timeout 60m -v ./e2e/

## e2e-pulumi: examples/pulumi with the real pulumi CLI, offline (README, "Pulumi")
e2e-pulumi: deps image pulumi-tools
	$(PULUMI_BIN_SH); PROVISION_PULUMI_BIN=$$bin $(GO) test -count=1 -timeout 60m -v -run TestPulumiExample ./e2e/

## pulumi-plugin: build the Pulumi provider plugin; put it on PATH or in
## ~/.pulumi/bin (README, "Pulumi")
PULUMI_PLUGIN_VERSION ?= 0.1.0
.PHONY: pulumi-plugin
pulumi-plugin:
	$(GO) build -ldflags "-X main.version=$(PULUMI_PLUGIN_VERSION)" -o bin/pulumi-resource-provision ./cmd/pulumi-resource-provision

## pulumi-sdk: regenerate the Go SDK, pulumi/sdk/provision, from the
## provider's schema (cmd/pulumi-resource-provision/schema.json) with Pulumi's
## Go code generator; pulumi/sdk/gen's test fails until it is rerun
pulumi-sdk:
	$(GO) run ./pulumi/sdk/gen

## pulumi-tools: build the pulumi CLI and the Go language host from the module
## proxy into ${PROVISION_CACHE:-~/.cache/provision}/pulumi/<version>/bin
## (5-16 min cold, a second when built). PULUMI_TOOLS_FLAGS=--check also runs
## an offline up/destroy.
pulumi-tools:
	./scripts/build-pulumi.sh $(PULUMI_TOOLS_FLAGS)

# PULUMI_BIN_SH sets the shell variable bin to the pulumi tools' directory,
# the last stdout line of scripts/build-pulumi.sh (a quick check once
# pulumi-tools has built them), and fails the recipe when there is none.
PULUMI_BIN_SH = bin=$$(./scripts/build-pulumi.sh 2>/dev/null | tail -n 1); \
	[ -x "$$bin/pulumi" ] || { echo "make: no pulumi tools from scripts/build-pulumi.sh (run make pulumi-tools)" >&2; exit 1; }

## bench: the scale benchmark (README, "Scale"): time to N = 1, 10, 100 and
## 1,000 machines Ready for provision and for the peers' way, in one run, in
## model time against cloudsim's EC2 with EC2's published API rate limits
## (well under a minute of wall time); prints the table and writes
## bin/bench.png. BENCH_FLAGS adds flags, e.g. BENCH_FLAGS='-scalebench.n 1,100
## -scalebench.md bin/bench.md'
BENCH_FLAGS ?=
bench:
	@mkdir -p bin
	$(GO) test -c -o bin/scalebench.test ./internal/scalebench
	bin/scalebench.test -test.run '^TestBench$$' -test.timeout 30m -scalebench -scalebench.png bin/bench.png $(BENCH_FLAGS)

vet:
	$(GO) vet ./...

## lint: go.mod and go.sum must be what `go mod tidy` makes them, and
## staticcheck (built once per version into the cache) must find nothing
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $${PROVISION_CACHE:-$$HOME/.cache/provision}/tools/staticcheck-$(STATICCHECK_VERSION)
lint:
	@$(GO) mod tidy -diff >/dev/null || { $(GO) mod tidy -diff; echo "make: go.mod/go.sum are not tidy: run go mod tidy and commit the result" >&2; exit 1; }
	@[ -x $(STATICCHECK)/staticcheck ] || GOBIN=$(STATICCHECK) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(STATICCHECK)/staticcheck ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
