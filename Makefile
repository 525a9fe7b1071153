# gateway — build, test and lint. `make test` is the one command that installs
# what the tests need (when run as root) and runs every test, end-to-end included.

GO      ?= go
PKGS    ?= ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all build test verify test-deps lint fmt clean

all: lint test

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/gateway ./cmd/gateway

# Installs missing test dependencies (apt packages) when run as root,
# otherwise names what to install; then runs all tests with the race detector.
test: test-deps
	$(GO) test -race -timeout 30m -count=1 $(PKGS)

# What a release must pass: lint, then every test including the long
# variants (TestIISBigTransfer streams 1 GiB each way instead of 256 MiB).
verify: lint test-deps
	GATEWAY_E2E_BIG=1 $(GO) test -race -timeout 30m -count=1 $(PKGS)

test-deps:
	@bash .ci/install-deps

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin demo-data
