package configs

import (
	"strings"
	"testing"
)

func TestParseUpstreamAddress(t *testing.T) {
	tests := []struct {
		in      string
		want    UpstreamAddress
		wantErr string
	}{
		{in: "10.0.1.7:1433", want: UpstreamAddress{Host: "10.0.1.7", Port: 1433}},
		{in: "sql01.corp.local:14330", want: UpstreamAddress{Host: "sql01.corp.local", Port: 14330}},
		{in: "[fd00::7]:1433", want: UpstreamAddress{Host: "fd00::7", Port: 1433}},
		{in: `sql01\SQLEXPRESS`, want: UpstreamAddress{Host: "sql01", Instance: "SQLEXPRESS"}},
		{in: `10.0.1.7\_Inst$2`, want: UpstreamAddress{Host: "10.0.1.7", Instance: "_Inst$2"}},
		{in: "sql01", wantErr: "missing port"},
		{in: ":1433", wantErr: "missing host"},
		{in: "sql01:0", wantErr: "port must be 1-65535"},
		{in: "sql01:65536", wantErr: "port must be 1-65535"},
		{in: `\SQLEXPRESS`, wantErr: "missing host"},
		{in: `sql01:1433\SQLEXPRESS`, wantErr: "takes no port"},
		{in: `sql01\`, wantErr: "not an instance name"},
		{in: `sql01\9LIVES`, wantErr: "not an instance name"},
		{in: `sql01\WAYTOOLONGINSTANCENAME`, wantErr: "not an instance name"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseUpstreamAddress(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %+v, %v; want %+v", got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

func TestRoutingAllowed(t *testing.T) {
	patterns := []string{"sql02.corp.local", "*.database.windows.net", "10.0.1.8"}
	tests := []struct {
		host string
		want bool
	}{
		{"sql02.corp.local", true},
		{"SQL02.Corp.Local.", true},
		{"tr1.eastus1-a.worker.database.windows.net", true},
		{"x.database.windows.net", true},
		{"database.windows.net", false},
		{"evil-database.windows.net", false},
		{"sql02.corp.local.evil.test", false},
		{"10.0.1.8", true},
		{"10.0.1.9", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := RoutingAllowed(tc.host, patterns); got != tc.want {
			t.Errorf("RoutingAllowed(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}
