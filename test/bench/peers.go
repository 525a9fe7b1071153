//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// The peers' configurations are equivalent to the gateway's defaults where
// it matters for the figures: TLS 1.2 and 1.3 with each server's default
// ciphers, HTTP/2 and HTTP/1.1 offered, HTTP/1.1 with keep-alive to the
// upstream and an idle pool as large as the gateway's (1024 per upstream:
// with nginx's usual 64, or Caddy's default, they close and re-open
// upstream connections under the HTTP/2 load), no access log, keep-alive to clients with no request cap (the
// gateway has none; nginx closes after 1000 requests by default, which would
// turn the keep-alive test into a handshake test), idle client connections
// kept 5 minutes, and enough file descriptors for the idle-connection test.

// maxConns is the connection capacity configured in every peer.
const maxConns = 16384

func (b *bench) nginxConf(dir, addr string) (string, error) {
	for _, d := range []string{"tmp", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	conf := fmt.Sprintf(`daemon off;
worker_processes auto;
worker_rlimit_nofile %[1]d;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log warn;
events { worker_connections %[1]d; }
http {
  access_log off;
  client_body_temp_path %[2]s/tmp/body;
  proxy_temp_path %[2]s/tmp/proxy;
  fastcgi_temp_path %[2]s/tmp/fastcgi;
  uwsgi_temp_path %[2]s/tmp/uwsgi;
  scgi_temp_path %[2]s/tmp/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  http2_max_requests 100000000;
  upstream backend {
    server %[3]s;
    keepalive 1024;
  }
  server {
    listen %[4]s ssl http2;
    ssl_certificate %[5]s;
    ssl_certificate_key %[6]s;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_max_temp_file_size 0;
    }
  }
}
`, maxConns, dir, b.backend, addr, b.certs.cert, b.certs.key)
	path := filepath.Join(dir, "nginx.conf")
	return path, os.WriteFile(path, []byte(conf), 0o600)
}

func (b *bench) haproxyConf(dir, addr string) (string, error) {
	// haproxy asks for 2*maxconn file descriptors and refuses to start where
	// it cannot raise the limit that far; "no strict-limits" makes that a
	// warning (idle client connections need one descriptor each).
	conf := fmt.Sprintf(`global
  maxconn %[1]d
  no strict-limits
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  timeout http-request 30s
frontend fe
  bind %[2]s ssl crt %[3]s alpn h2,http/1.1
  option forwardfor
  default_backend be
backend be
  server s1 %[4]s
`, maxConns, addr, b.certs.combined, b.backend)
	path := filepath.Join(dir, "haproxy.cfg")
	return path, os.WriteFile(path, []byte(conf), 0o600)
}

func (b *bench) caddyConf(dir, addr string) (string, error) {
	conf := fmt.Sprintf(`{
  admin off
  skip_install_trust
  auto_https off
  servers {
    protocols h1 h2
    timeouts {
      idle 5m
    }
  }
}
https://%[1]s {
  tls %[2]s %[3]s
  reverse_proxy %[4]s {
    transport http {
      keepalive 5m
      keepalive_idle_conns 1024
      keepalive_idle_conns_per_host 1024
    }
  }
}
`, addr, b.certs.cert, b.certs.key, b.backend)
	path := filepath.Join(dir, "Caddyfile")
	return path, os.WriteFile(path, []byte(conf), 0o600)
}
