package clients

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTestdata: the scripts are where Testdata says, whatever the working
// directory of the test binary that uses this package.
func TestTestdata(t *testing.T) {
	for _, f := range []string{"pytds_client.py", filepath.Join("node", "client.js"), filepath.Join("node", "package-lock.json"), filepath.Join("jtds", "Client.java")} {
		if _, err := os.Stat(filepath.Join(Testdata(), f)); err != nil {
			t.Errorf("client script: %v", err)
		}
	}
}

func TestMissingError(t *testing.T) {
	cause := errors.New("exec: \"node\": executable file not found in $PATH")
	err := error(&MissingError{Err: cause, Install: "the Debian package nodejs"})
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), "install the Debian package nodejs") {
		t.Errorf("MissingError %q does not wrap its cause or name what to install", err)
	}
}
