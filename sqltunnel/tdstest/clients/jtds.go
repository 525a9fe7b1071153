package clients

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// JTDSJar is where Debian's libjtds-java installs jTDS 1.3.1.
const JTDSJar = "/usr/share/java/jtds.jar"

// JTDS is one run of jTDS 1.3.1 (testdata/jtds/Client.java, compiled with
// javac into Dir): connect with URL, SELECT 1, SELECT @@VERSION and two
// text rows, close. Right after its login
// jTDS sends one batch of its own (SELECT @@MAX_PRECISION and SET
// statements); a failure there is reported with Stage "connect" like a
// failed login.
type JTDS struct {
	// URL is the JDBC URL, e.g.
	// jdbc:jtds:sqlserver://HOST/master;instance=NAME;ssl=require.
	URL      string
	User     string
	Password string
	// Dir receives the compiled client (a test's t.TempDir()).
	Dir string
	// TrustPEM, when set, is the only root the JVM trusts (a PKCS#12
	// trust store built with keytool in Dir): what ssl=authenticate
	// verifies the server's chain against.
	TrustPEM string
}

// JTDSSetup returns the paths of java and javac, or a *MissingError naming
// the Debian packages to install.
func JTDSSetup() (java, javac string, err error) {
	const install = "the Debian packages default-jdk-headless and libjtds-java"
	if java, err = exec.LookPath("java"); err != nil {
		return "", "", &MissingError{Err: err, Install: install}
	}
	if javac, err = exec.LookPath("javac"); err != nil {
		return "", "", &MissingError{Err: err, Install: install}
	}
	if _, err := os.Stat(JTDSJar); err != nil {
		return "", "", &MissingError{Err: err, Install: install}
	}
	return java, javac, nil
}

// Run compiles the client into Dir, runs it until it exits or ctx ends,
// and returns its result line. An error means the client could not be
// built or run, or printed no result; a refused connection is a Result
// with OK false.
func (o JTDS) Run(ctx context.Context) (Result, error) {
	java, javac, err := JTDSSetup()
	if err != nil {
		return Result{}, err
	}
	src := filepath.Join(Testdata(), "jtds", "Client.java")
	if out, err := exec.CommandContext(ctx, javac, "-d", o.Dir, src).CombinedOutput(); err != nil {
		return Result{}, fmt.Errorf("javac %s: %w\n%s", src, err, out)
	}
	args := []string{"-cp", o.Dir + string(os.PathListSeparator) + JTDSJar}
	if o.TrustPEM != "" {
		store := filepath.Join(o.Dir, "truststore.p12")
		keytool, err := exec.LookPath("keytool")
		if err != nil {
			return Result{}, &MissingError{Err: err, Install: "the Debian package default-jdk-headless"}
		}
		if out, err := exec.CommandContext(ctx, keytool, "-importcert", "-noprompt", "-alias", "root", "-file", o.TrustPEM,
			"-keystore", store, "-storetype", "PKCS12", "-storepass", "tdstest").CombinedOutput(); err != nil {
			return Result{}, fmt.Errorf("keytool: %w\n%s", err, out)
		}
		args = append(args, "-Djavax.net.ssl.trustStore="+store, "-Djavax.net.ssl.trustStorePassword=tdstest",
			"-Djavax.net.ssl.trustStoreType=PKCS12")
	}
	cmd := exec.CommandContext(ctx, java, append(args, "Client", o.URL, o.User)...)
	cmd.Env = append(os.Environ(), "TDSTEST_PASSWORD="+o.Password)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("jtds client: %w\nstdout: %s\nstderr: %s", err, &stdout, &stderr)
	}
	var res Result
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
		return Result{}, fmt.Errorf("jtds client printed %q: %w (stderr: %s)", &stdout, err, &stderr)
	}
	return res, nil
}
