# provision — make targets. `make demo` and `make test` do all their own setup.
GO        ?= go
BIN       := bin/provision
PLAN      ?= examples/local.yaml
# Packages whose tests need nothing but Go; the rest need dockerd.
export PROVISION_REQUIRE_DOCKER ?= 1

.PHONY: all build deps image demo down test unit e2e vet fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/provision

deps:
	./scripts/install-deps.sh

image: deps build
	$(BIN) image build

## demo: install what is needed, build the node image, and bring up examples/local.yaml
demo: image
	$(BIN) up $(PLAN)
	$(BIN) ssh $(PLAN) managers -- docker node ls

down: build
	$(BIN) down $(PLAN)

## test: every test, unit and end-to-end (installs and starts docker when missing)
## The node image is built once up front so parallel test packages share it.
test: deps vet image
	$(GO) test -count=1 -timeout 60m ./...

unit:
	PROVISION_REQUIRE_DOCKER= $(GO) test -count=1 -short ./...

e2e: deps image
	$(GO) test -count=1 -timeout 60m -v ./e2e/

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
