package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// gatewayBin is the gateway binary built once for this test run by TestMain.
var gatewayBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gateway-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	gatewayBin = filepath.Join(dir, "gateway")
	if runtime.GOOS == "windows" {
		gatewayBin += ".exe"
	}
	// go test runs in the package directory; the module root is its parent.
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	build := exec.Command(goTool(), "build", "-o", gatewayBin, "./cmd/gateway")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the gateway: %v\n%s", err, out)
		return 1
	}
	// The log-hygiene scan runs last, over every gateway's logs.
	return finishLogHygiene(m.Run())
}

// goTool is the go command of the toolchain running the tests: go test puts
// its GOROOT/bin first on the PATH of the test binary.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}
