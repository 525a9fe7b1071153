# gateway — build, test and lint. `make test` is the one command that installs
# what the tests need (when run as root) and runs every test, end-to-end included.

GO      ?= go
PKGS    ?= ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all build test verify verify-long fuzz test-deps lint fmt clean bench bench-deps bench-go pgo

all: lint test

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/gateway ./cmd/gateway

# Fuzzing time per target: short in `make test`, longer in `make verify`.
FUZZTIME_SHORT ?= 10s
FUZZTIME       ?= 30s

# Installs missing test dependencies (apt packages) when run as root,
# otherwise names what to install; then runs all tests with the race detector
# (the fast proofs in test/proof_* included), then fuzzes every target of
# ./sqltunnel/... briefly.
test: test-deps
	$(GO) test -race -timeout 30m -count=1 $(PKGS)
	$(GO) run ./test/verify -steps fuzz -fuzztime $(FUZZTIME_SHORT)

# What a release must pass (test/verify): lint, every test including the long
# variants (TestIISBigTransfer streams 1 GiB each way instead of 256 MiB),
# FUZZTIME of fuzzing per target, and the long proofs (testssl, sslscan,
# h2spec, faults under load, tshark wire capture as root). Prints one table
# (check, figure, verdict) and fails if any check fails. About 25 minutes.
verify: test-deps
	$(GO) run ./test/verify -fuzztime $(FUZZTIME)

# Only the long proofs of verify (testssl, sslscan, h2spec, faults under
# load, tshark as root), with its table: what CI adds after make test.
verify-long: test-deps
	$(GO) run ./test/verify -steps long

# Only the fuzzing step of verify.
fuzz:
	$(GO) run ./test/verify -steps fuzz -fuzztime $(FUZZTIME)

test-deps:
	@bash .ci/install-deps

# Whole-system benchmarks (test/bench): the gateway side by side with nginx,
# HAProxy, Caddy and direct connections, on this machine; prints a Markdown
# table of medians and ratios, the scaling curves and every target met or
# not; writes every sample to bench-results.json and the curves to
# bench-scaling.svg. Full run < 20 min; `make bench BENCH_FLAGS=-quick`
# takes about 5 min. Installs wrk, h2load, nginx, haproxy and caddy when run
# as root.
BENCH_FLAGS ?=
bench: bench-deps
	$(GO) run ./test/bench -json bench-results.json -svg bench-scaling.svg $(BENCH_FLAGS)

# Refreshes cmd/gateway/default.pgo, the CPU profile `go build` optimises the
# gateway with (profile-guided optimisation), from the gateway under the
# bench's HTTP/1.1, HTTP/2, TDS latency, login and rowset loads. `make bench`
# measures the gain beside a build without it (gateway-nopgo).
PGO_PROFILES ?= .pgo-profiles
pgo: bench-deps
	rm -rf $(PGO_PROFILES)
	$(GO) run ./test/bench -quick -rounds 1 -duration 10s -pgo-ab off -peers= -tests h1,h2,select1,logins,bulk -profile $(PGO_PROFILES)
	$(GO) tool pprof -proto $(PGO_PROFILES)/*.pprof > cmd/gateway/default.pgo
	rm -rf $(PGO_PROFILES)

bench-deps:
	@bash .ci/install-bench-deps

# Go micro-benchmarks of the hot paths (TDS codec and relay, certificate
# choice per handshake, header rewriting, the proxied request).
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./sqltunnel/... ./tlsmgr ./proxy

# staticcheck and golangci-lint (.golangci.yml), pinned, built into bin/ on
# first use (golangci-lint takes about 3 minutes to build); each runs for
# Linux and for Windows, since files differ by build tag.
STATICCHECK_VERSION   ?= v0.8.2
STATICCHECK           := bin/staticcheck-$(STATICCHECK_VERSION)
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT         := bin/golangci-lint-$(GOLANGCI_LINT_VERSION)

lint: $(STATICCHECK) $(GOLANGCI_LINT)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null $(PKGS)
	$(STATICCHECK) $(PKGS)
	GOOS=windows GOARCH=amd64 $(STATICCHECK) $(PKGS)
	$(GOLANGCI_LINT) run $(PKGS)
	GOOS=windows GOARCH=amd64 $(GOLANGCI_LINT) run $(PKGS)

$(STATICCHECK):
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv bin/staticcheck $@

$(GOLANGCI_LINT):
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv bin/golangci-lint $@

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin demo-data bench-results.json bench-scaling.svg .pgo-profiles
