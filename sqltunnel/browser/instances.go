package browser

import (
	"fmt"
	"strconv"
	"strings"
)

// InstanceInfo is one instance described in RESP_DATA (MC-SQLR 2.2.5):
//
//	ServerName;DB01;InstanceName;SQLEXPRESS;IsClustered;No;Version;16.0.1000.6;tcp;1433;;
//
// Only the fields clients use are kept: of the protocols, TCP and named
// pipes (the others — VIA, RPC, SPX, AppleTalk, Banyan VINES — are skipped
// when parsing).
type InstanceInfo struct {
	ServerName   string
	InstanceName string
	IsClustered  bool
	// Version is the instance's version as digits and dots (16.0.1000.6).
	Version string
	// TCPPort is the instance's TCP port; 0 means no TCP endpoint.
	TCPPort int
	// Pipe is the instance's named pipe; "" means none.
	Pipe string
}

// AppendInstance appends the RESP_DATA text of one instance to dst:
// ServerName, InstanceName, IsClustered and Version, then tcp and np when
// set, and the ";;" that ends an instance. Values must be non-empty (but
// Pipe) and hold neither ';' nor NUL; the version is digits and dots, at
// most 16 bytes; the server name at most 255 bytes.
func AppendInstance(dst []byte, in InstanceInfo) ([]byte, error) {
	for _, f := range []struct{ key, v string }{
		{"ServerName", in.ServerName}, {"InstanceName", in.InstanceName}, {"Version", in.Version},
	} {
		if err := checkValue(f.key, f.v); err != nil {
			return dst, err
		}
	}
	if len(in.ServerName) > maxServerName {
		return dst, fmt.Errorf("%w: ServerName is %d bytes, at most %d", ErrTooLong, len(in.ServerName), maxServerName)
	}
	if !validVersion(in.Version) {
		return dst, fmt.Errorf("%w: Version %q: write digits and dots, at most %d bytes", ErrInvalidValue, in.Version, maxVersion)
	}
	if in.TCPPort < 0 || in.TCPPort > 65535 {
		return dst, fmt.Errorf("%w: tcp port %d", ErrInvalidValue, in.TCPPort)
	}
	if in.Pipe != "" {
		if err := checkValue("np", in.Pipe); err != nil {
			return dst, err
		}
	}
	clustered := "No"
	if in.IsClustered {
		clustered = "Yes"
	}
	dst = append(dst, "ServerName;"...)
	dst = append(dst, in.ServerName...)
	dst = append(dst, ";InstanceName;"...)
	dst = append(dst, in.InstanceName...)
	dst = append(dst, ";IsClustered;"...)
	dst = append(dst, clustered...)
	dst = append(dst, ";Version;"...)
	dst = append(dst, in.Version...)
	if in.TCPPort != 0 {
		dst = append(dst, ";tcp;"...)
		dst = strconv.AppendInt(dst, int64(in.TCPPort), 10)
	}
	if in.Pipe != "" {
		dst = append(dst, ";np;"...)
		dst = append(dst, in.Pipe...)
	}
	return append(dst, ";;"...), nil
}

func checkValue(key, v string) error {
	if v == "" || strings.ContainsAny(v, ";\x00") {
		return fmt.Errorf("%w: %s %q must be non-empty, without ';' or NUL", ErrInvalidValue, key, v)
	}
	return nil
}

func validVersion(v string) bool {
	if v == "" || len(v) > maxVersion {
		return false
	}
	for _, c := range []byte(v) {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

// protocolValues is how many values follow each protocol token: Banyan
// VINES names an item, a group and an organisation (MC-SQLR 2.2.5).
var protocolValues = map[string]int{"tcp": 1, "np": 1, "via": 1, "rpc": 1, "spx": 1, "adsp": 1, "bv": 3}

// ParseInstances decodes RESP_DATA: zero or more instances, each a list of
// "key;value" pairs starting with ServerName and ending with an empty field
// (";;"). Keys the specification does not define are skipped with their
// value. An error wraps ErrMalformed: a missing ServerName, an unterminated
// instance, a tcp port that is not 1-65535, IsClustered other than Yes or
// No, or a NUL anywhere.
func ParseInstances(data []byte) ([]InstanceInfo, error) {
	s := string(data)
	if strings.IndexByte(s, 0) >= 0 {
		return nil, fmt.Errorf("%w: NUL in RESP_DATA", ErrMalformed)
	}
	if s == "" {
		return nil, nil
	}
	fields := strings.Split(s, ";")
	// A well-formed text ends with ";;": its last field is empty, and so is
	// the one before (the end of the last instance).
	if len(fields) < 3 || fields[len(fields)-1] != "" {
		return nil, fmt.Errorf("%w: RESP_DATA does not end with \";;\"", ErrMalformed)
	}
	fields = fields[:len(fields)-1]
	var out []InstanceInfo
	for i := 0; i < len(fields); {
		if fields[i] != "ServerName" {
			return nil, fmt.Errorf("%w: instance %d starts with %q, not ServerName", ErrMalformed, len(out), fields[i])
		}
		var in InstanceInfo
		for {
			if i >= len(fields) {
				return nil, fmt.Errorf("%w: instance %d is not terminated", ErrMalformed, len(out))
			}
			key := fields[i]
			if key == "" { // ";;": end of this instance
				i++
				break
			}
			n := 1
			if p, ok := protocolValues[key]; ok {
				n = p
			}
			if i+n >= len(fields) {
				return nil, fmt.Errorf("%w: %s without its value", ErrMalformed, key)
			}
			v := fields[i+1]
			if err := in.set(key, v); err != nil {
				return nil, err
			}
			i += 1 + n
		}
		out = append(out, in)
	}
	return out, nil
}

func (in *InstanceInfo) set(key, v string) error {
	switch key {
	case "ServerName":
		in.ServerName = v
	case "InstanceName":
		in.InstanceName = v
	case "IsClustered":
		switch {
		case strings.EqualFold(v, "Yes"):
			in.IsClustered = true
		case strings.EqualFold(v, "No"):
			in.IsClustered = false
		default:
			return fmt.Errorf("%w: IsClustered %q", ErrMalformed, v)
		}
	case "Version":
		in.Version = v
	case "tcp":
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%w: tcp port %q", ErrMalformed, v)
		}
		in.TCPPort = p
	case "np":
		in.Pipe = v
	}
	return nil
}
