// Package test holds the end-to-end tests of the gateway: they build the real
// binary once, start it with configurations written into temporary
// directories, and drive it with real clients (Go's net/http and crypto/tls,
// openssl, sslscan, pebble) on 127.0.0.1 ports chosen by the kernel.
//
// It does not test packages from the inside: unit tests live beside the code
// they test. Tests that need a tool which is not installed (pebble, sslscan,
// openssl) skip, naming the Debian package to install. A failing test logs
// the output of every process it started; E2E_LOGS=1 go test -v ./test
// logs it for passing tests too.
package test
