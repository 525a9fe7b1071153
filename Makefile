# gateway — build, test and lint. `make test` is the one command that installs
# what the tests need (when run as root) and runs every test, end-to-end included.

GO      ?= go
PKGS    ?= ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all build test test-deps lint fmt clean

all: lint test

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/gateway ./cmd/gateway

# Installs missing test dependencies (apt packages) when run as root,
# otherwise names what to install; then runs all tests with the race detector.
test: test-deps
	$(GO) test -race -timeout 30m -count=1 $(PKGS)

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
