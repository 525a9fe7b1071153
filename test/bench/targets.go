//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
)

// bench is what every test shares: the work directory, the certificate, the
// gateway binary and the backends.
type bench struct {
	dir     string
	certs   certFiles
	gateway string // built binary
	// gatewayNoPGO is the same source built with -pgo=off (-pgo-ab), or "".
	gatewayNoPGO string
	self         string // this program, for the backend roles
	backend      string // host:port of the clear-text HTTP backend
	direct       string // host:port of the same backend over TLS
	tds          string // host:port of the SQL Server double
	maxFD        uint64
	peers        map[string]string // peer name -> binary, for those installed
	pprof        string            // the long-running gateway's pprof address, or ""
	pprof2       string            // the fresh gateways' (memory tests), or ""
	// profileDir receives the profiles (-profile).
	profileDir string
}

const readyTimeout = 60 * time.Second

// server is a running HTTP front under test.
type server struct {
	name string
	addr string // host:port of its TLS listener
	proc *child // nil for the direct backend (owned by the harness)
}

func (s *server) url(path string) string { return "https://" + s.addr + path }

func (s *server) stop() {
	if s != nil && s.proc != nil {
		s.proc.stop()
	}
}

func (b *bench) startRole(ctx context.Context, role string) (*child, map[string]string, error) {
	return startChild(ctx, role, b.self, []string{b.certs.cert, b.certs.key},
		[]string{roleEnv + "=" + role}, b.dir, readyWords, readyTimeout)
}

// startServer starts a fresh instance of the named front ("direct" starts a
// fresh backend, for memory measurements).
func (b *bench) startServer(ctx context.Context, name string) (*server, error) {
	switch name {
	case "gateway", gatewayGOGC50, gatewayNoPGO:
		c, facts, err := b.startGatewayAs(ctx, name, true, false)
		if err != nil {
			return nil, err
		}
		return &server{name: name, addr: facts["https_addr"], proc: c}, nil
	case "direct":
		c, facts, err := b.startRole(ctx, "backend")
		if err != nil {
			return nil, err
		}
		return &server{name: name, addr: facts["https"], proc: c}, nil
	}
	port, err := testkit.FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	dir, err := os.MkdirTemp(b.dir, name+"-")
	if err != nil {
		return nil, err
	}
	var (
		args []string
		env  []string
	)
	switch name {
	case "nginx":
		conf, err := b.nginxConf(dir, addr)
		if err != nil {
			return nil, err
		}
		args = []string{"-e", filepath.Join(dir, "error.log"), "-p", dir, "-c", conf}
	case "haproxy":
		conf, err := b.haproxyConf(dir, addr)
		if err != nil {
			return nil, err
		}
		args = []string{"-db", "-f", conf}
	case "caddy":
		conf, err := b.caddyConf(dir, addr)
		if err != nil {
			return nil, err
		}
		args = []string{"run", "--config", conf, "--adapter", "caddyfile"}
		env = []string{"XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config")}
	default:
		return nil, fmt.Errorf("unknown server %q", name)
	}
	c, _, err := startChild(ctx, name, b.peers[name], args, env, dir, nil, 0)
	if err != nil {
		return nil, err
	}
	if err := waitTLS(ctx, c, addr, readyTimeout); err != nil {
		c.stop()
		return nil, err
	}
	return &server{name: name, addr: addr, proc: c}, nil
}

// The gateway's variants, measured beside it where they show the effect of
// a setting: the README's runtime recommendation for many idle
// connections, and a build without profile-guided optimisation (-pgo-ab).
const (
	gatewayGOGC50 = "gateway-gogc50"
	gatewayNoPGO  = "gateway-nopgo"
)

// startGatewayAs starts the gateway target named name (one of "gateway"
// and its variants).
func (b *bench) startGatewayAs(ctx context.Context, name string, withHTTP, withSQL bool) (*child, map[string]string, error) {
	switch name {
	case gatewayGOGC50:
		return b.startGatewayWith(ctx, b.gateway, map[string]any{"gogc": 50}, withHTTP, withSQL)
	case gatewayNoPGO:
		return b.startGatewayWith(ctx, b.gatewayNoPGO, nil, withHTTP, withSQL)
	}
	return b.startGateway(ctx, withHTTP, withSQL)
}

// startGateway runs `gateway run` with the bench certificate as an operator
// certificate (tls.issuer none, so it serves exactly what the peers serve),
// an HTTPS front to the backend and/or a SQL listener to the double.
func (b *bench) startGateway(ctx context.Context, withHTTP, withSQL bool) (*child, map[string]string, error) {
	return b.startGatewayWith(ctx, b.gateway, nil, withHTTP, withSQL)
}

// startGatewayWith is startGateway with another binary and runtime keys.
func (b *bench) startGatewayWith(ctx context.Context, bin string, runtime map[string]any, withHTTP, withSQL bool) (*child, map[string]string, error) {
	dir, err := os.MkdirTemp(b.dir, "gateway-")
	if err != nil {
		return nil, nil, err
	}
	cfg := map[string]any{
		"log":           map[string]any{"level": "info", "format": "json"},
		"admin":         map[string]any{"listen": ""},
		"storage":       filepath.Join(dir, "storage"),
		"drain_timeout": "2s",
		"tls": map[string]any{
			"issuer":       "none",
			"certificates": []any{map[string]any{"cert_file": b.certs.cert, "key_file": b.certs.key}},
		},
		"http": map[string]any{"listen": "", "redirect_listen": ""},
	}
	if runtime != nil {
		cfg["runtime"] = runtime
	}
	if withHTTP {
		cfg["http"] = map[string]any{
			"listen":          "127.0.0.1:0",
			"redirect_listen": "",
			"sites":           []any{map[string]any{"hosts": []string{"localhost"}, "upstreams": []string{"http://" + b.backend}}},
		}
	}
	if withSQL {
		cfg["sql"] = []any{map[string]any{
			"name": "bench", "listen": "127.0.0.1:0", "hostname": "localhost",
			"client_encryption": "required",
			"upstream": map[string]any{
				"address": b.tds, "encryption": "required",
				"server_name": "localhost", "ca_file": b.certs.root,
			},
		}}
	}
	data, err := json.MarshalIndent(cfg, "", "  ") // JSON is YAML
	if err != nil {
		return nil, nil, err
	}
	file := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return nil, nil, err
	}
	var env []string
	switch {
	case b.pprof == "":
	case withHTTP && withSQL: // the long-running one
		env = append(env, "GATEWAY_PPROF="+b.pprof)
	default:
		env = append(env, "GATEWAY_PPROF="+b.pprof2)
	}
	return startChild(ctx, "gateway", bin, []string{"run", "--config", file}, env, dir, gatewayReady, readyTimeout)
}

// gatewayReady matches the gateway's "gateway ready" log line.
func gatewayReady(line string) (map[string]string, bool) {
	var e map[string]any
	if json.Unmarshal([]byte(line), &e) != nil || e["msg"] != "gateway ready" {
		return nil, false
	}
	facts := map[string]string{}
	for _, k := range []string{"https_addr", "sql_addr"} {
		if s, ok := e[k].(string); ok {
			facts[k] = s
		}
	}
	return facts, true
}

// findPeers looks up the peer proxies' binaries; missing ones are skipped.
func findPeers(names []string) map[string]string {
	found := map[string]string{}
	for _, n := range names {
		paths := []string{n, "/usr/sbin/" + n}
		for _, p := range paths {
			if full, err := exec.LookPath(p); err == nil {
				found[n] = full
				break
			}
		}
	}
	return found
}
