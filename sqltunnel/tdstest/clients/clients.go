// Package clients runs the independent SQL Server client implementations
// the project's tests drive — tedious (Node.js), pytds (Python) and jTDS
// (Java) — as child processes, and parses the JSON lines they print. The
// programs live in tdstest's testdata: node/client.js, with tedious
// installed there by `npm ci`, pytds_client.py, and jtds/Client.java,
// compiled at run time. All read the password from the environment
// (TDSTEST_PASSWORD), never from their command line.
//
// The tdstest package checks its double against these clients; the
// end-to-end tests (package test) run the same clients through the gateway.
package clients

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
)

// Python is Debian's interpreter, which has python3-tds; a pyenv or
// virtualenv python on PATH may not.
const Python = "/usr/bin/python3"

// Result is the last JSON line a client script prints.
type Result struct {
	// Event names an intermediate line (tedious: "waitfor-sent"); empty on
	// the result line.
	Event string `json:"event"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
	// Code is tedious's error code (ESOCKET, EENCRYPT, ELOGIN, ...), or
	// jTDS's SQLState.
	Code string `json:"code"`
	// Stage is where jTDS failed: connect (the Browser lookup, TLS, the
	// login and the statements jTDS sends right after it) or query.
	Stage   string `json:"stage"`
	Results struct {
		Select1     int      `json:"select1"`
		Version     string   `json:"version"`
		Rows        []string `json:"rows"`
		NRows       []string `json:"nrows"`
		Cancel      string   `json:"cancel"`      // tedious, with Cancel
		AfterCancel int      `json:"afterCancel"` // tedious, with Cancel
	} `json:"results"`
}

// MissingError reports a client that is not installed, naming what to
// install. Tests skip on it, or fail when real clients are required (CI).
type MissingError struct {
	Err     error
	Install string
}

func (e *MissingError) Error() string { return fmt.Sprintf("%v: install %s", e.Err, e.Install) }

func (e *MissingError) Unwrap() error { return e.Err }

// Testdata is the folder holding the client scripts.
func Testdata() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return filepath.Join("sqltunnel", "tdstest", "testdata")
	}
	return filepath.Join(filepath.Dir(file), "..", "testdata")
}

// Tedious is one run of tedious 19 (testdata/node/client.js): connect,
// SELECT 1, @@VERSION and two rowsets, then close.
type Tedious struct {
	Host string
	Port int
	// Instance, when set, is a named instance: tedious asks SQL Server
	// Browser (UDP 1434 of Host) for its port, and Port is ignored.
	Instance string
	User     string
	Password string
	// Encrypt is tedious's encrypt option: true, false or "strict".
	Encrypt any
	// CAFile is the only CA trusted (trustServerCertificate is false).
	CAFile string
	// Cancel makes the script start a WAITFOR, report "waitfor-sent" and
	// cancel it (an attention) once told to.
	Cancel bool
	// OnWaitforSent, with Cancel, runs when the script reports the WAITFOR
	// sent; the script is told to cancel when it returns.
	OnWaitforSent func() error
}

// TediousSetup returns the paths of node and of the folder holding
// client.js and tedious, or a *MissingError.
func TediousSetup() (node, dir string, err error) {
	node, err = exec.LookPath("node")
	if err != nil {
		return "", "", &MissingError{Err: err, Install: "the Debian package nodejs (Node 18 or later)"}
	}
	dir, err = filepath.Abs(filepath.Join(Testdata(), "node"))
	if err != nil {
		return "", "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "tedious", "package.json")); err != nil {
		return "", "", &MissingError{Err: err, Install: "tedious 19 with `npm ci --prefix " + dir + "` (Debian package npm)"}
	}
	return node, dir, nil
}

// Run runs the client until it exits or ctx ends, and returns its result
// line. An error means the script could not run or printed no result; a
// refused connection is a Result with OK false.
func (o Tedious) Run(ctx context.Context) (Result, error) {
	node, dir, err := TediousSetup()
	if err != nil {
		return Result{}, err
	}
	cfg, err := json.Marshal(map[string]any{
		"host": o.Host, "port": o.Port, "user": o.User,
		"encrypt": o.Encrypt, "ca": o.CAFile, "cancel": o.Cancel, "instance": o.Instance,
	})
	if err != nil {
		return Result{}, err
	}
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "client.js"), string(cfg))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TDSTEST_PASSWORD="+o.Password)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return Result{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return Result{}, err
	}
	var (
		last    Result
		lineErr error
	)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var line Result
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			lineErr = errors.Join(lineErr, fmt.Errorf("tedious client printed %q: %w", sc.Bytes(), err))
			continue
		}
		if line.Event == "waitfor-sent" {
			if o.OnWaitforSent != nil {
				if err := o.OnWaitforSent(); err != nil {
					lineErr = errors.Join(lineErr, err)
				}
			}
			_, _ = io.WriteString(stdin, "cancel\n")
			_ = stdin.Close()
			continue
		}
		last = line
	}
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		return last, fmt.Errorf("tedious client: %w\nstderr: %s", err, &stderr)
	}
	if lineErr != nil {
		return last, lineErr
	}
	if !last.OK && last.Error == "" {
		return last, fmt.Errorf("tedious client printed no result; stderr: %s", &stderr)
	}
	return last, nil
}

// Pytds is one run of pytds (testdata/pytds_client.py): connect, SELECT 1,
// @@VERSION and two rowsets, then close. Without CAFile pytds sends NOT_SUP;
// with it, ON, and it verifies the certificate and Host against it.
type Pytds struct {
	Host     string
	Port     int
	User     string
	Password string
	CAFile   string
	// Args are more options of the script (--login-only, ...).
	Args []string
}

// PytdsSetup reports a *MissingError unless Debian's python has pytds and
// pyOpenSSL.
func PytdsSetup() error {
	if err := exec.Command(Python, "-c", "import pytds, OpenSSL").Run(); err != nil {
		return &MissingError{Err: fmt.Errorf("%s cannot import pytds and OpenSSL: %w", Python, err), Install: "the Debian packages python3-tds and python3-openssl"}
	}
	return nil
}

// Run runs the client until it exits or ctx ends and returns its result.
func (o Pytds) Run(ctx context.Context) (Result, error) {
	if err := PytdsSetup(); err != nil {
		return Result{}, err
	}
	args := []string{filepath.Join(Testdata(), "pytds_client.py"), "--host", o.Host, "--port", strconv.Itoa(o.Port), "--user", o.User}
	if o.CAFile != "" {
		args = append(args, "--cafile", o.CAFile)
	}
	args = append(args, o.Args...)
	cmd := exec.CommandContext(ctx, Python, args...)
	cmd.Env = append(os.Environ(), "TDSTEST_PASSWORD="+o.Password)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("pytds client: %w\nstdout: %s\nstderr: %s", err, &stdout, &stderr)
	}
	var res Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return Result{}, fmt.Errorf("pytds client printed %q: %w (stderr: %s)", &stdout, err, &stderr)
	}
	return res, nil
}
