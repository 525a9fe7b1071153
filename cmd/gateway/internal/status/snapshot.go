package status

import (
	"time"
)

// Snapshot is the body of /status.json (and what the status page shows).
// Its fields are a documented interface: `gateway audit` reads them.
type Snapshot struct {
	Generated time.Time `json:"generated"`
	Started   time.Time `json:"started"`
	Version   string    `json:"version"`
	// Ready is /readyz's verdict; NotReady its reasons.
	Ready    bool     `json:"ready"`
	NotReady []string `json:"not_ready,omitempty"`

	Listeners           []Listener    `json:"listeners"`
	Certificates        []Certificate `json:"certificates"`
	MissingCertificates []string      `json:"missing_certificates,omitempty"`
	Upstreams           []Upstream    `json:"upstreams"`

	// Window is what the gateway saw over the span asked for with
	// ?since=DURATION; absent without it.
	Window *Window `json:"window,omitempty"`
	// LastHour is the history minute by minute, oldest first; the last
	// minute is the one under way, counted up to Generated.
	LastHour []Minute `json:"last_hour"`
}

// Listener is one socket the gateway serves.
type Listener struct {
	// Kind is https, http_redirect, sql, sql_browser or admin.
	Kind    string `json:"kind"`
	Name    string `json:"name,omitempty"` // sql: sql[].name
	Address string `json:"address"`        // as bound
	// State is serving, or draining once the gateway is stopping.
	State string `json:"state"`
	// For sql listeners.
	Hostname         string `json:"hostname,omitempty"`
	Instance         string `json:"instance,omitempty"`
	ClientEncryption string `json:"client_encryption,omitempty"`
	Sessions         int64  `json:"sessions,omitempty"`
}

// Certificate is one certificate the gateway serves.
type Certificate struct {
	Names     []string  `json:"names"`
	Issuer    string    `json:"issuer"` // operator, internal, acme
	Source    string    `json:"source"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	DaysLeft  float64   `json:"days_left"`
	SHA256    string    `json:"sha256"`
}

// Upstream is one server behind the gateway and whether it takes traffic.
type Upstream struct {
	Kind    string `json:"kind"`  // http or sql
	Owner   string `json:"owner"` // the site (its first host) or sql listener name
	Address string `json:"address"`
	Healthy bool   `json:"healthy"`
	// Verify is how its certificate is verified: ca, pin, ca+pin, system,
	// insecure, or none (plain http:// or disabled_loopback).
	Verify string `json:"verify"`
}

// Source is what a Snapshot is built from: the running gateway.
type Source interface {
	Version() string
	Started() time.Time
	// Ready returns why the gateway is not ready; none means ready.
	Ready() []string
	Draining() bool
	Listeners() []Listener
	Upstreams() []Upstream
	// Certificates returns those served and the managed names without one.
	Certificates() ([]Certificate, []string)
}

// Build takes a snapshot of src and h; since > 0 adds the window.
func Build(src Source, h *History, since time.Duration) (Snapshot, error) {
	s := Snapshot{
		Generated: time.Now().UTC(),
		Started:   src.Started().UTC(),
		Version:   src.Version(),
		NotReady:  src.Ready(),
		Listeners: src.Listeners(),
		Upstreams: src.Upstreams(),
	}
	var err error
	if s.LastHour, err = h.Recent(60); err != nil {
		return s, err
	}
	s.Ready = len(s.NotReady) == 0
	s.Certificates, s.MissingCertificates = src.Certificates()
	if s.Listeners == nil {
		s.Listeners = []Listener{}
	}
	if s.Upstreams == nil {
		s.Upstreams = []Upstream{}
	}
	if s.Certificates == nil {
		s.Certificates = []Certificate{}
	}
	if since > 0 {
		w, err := h.Window(since)
		if err != nil {
			return s, err
		}
		s.Window = &w
	}
	return s, nil
}
