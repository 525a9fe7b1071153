// Package bindtest runs a real BIND 9 named for tests: one primary zone on a
// free 127.0.0.1 port that accepts TXT updates signed with a TSIG key
// (update-policy grant KEY zonesub TXT) and zone transfers with that key.
// The rfc2136 provider's tests and the end-to-end DNS-01 tests use it.
//
// It is test support only: named runs in the foreground from a temporary
// directory and is killed when the test ends. Without named installed the
// test is skipped, or fails when CI is true (CI installs bind9).
package bindtest
