package browser

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/ (TestSeedCorpus keeps them
// in step with seedCorpus). Run a target with, for example,
//
//	go test ./sqltunnel/browser -run '^$' -fuzz '^FuzzParseRequest$' -fuzztime 30s

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpora in testdata/fuzz")

func seedCorpus() map[string]map[string][]byte {
	resp := func(text string) []byte {
		b, _ := AppendResponse(nil, []byte(text))
		return b
	}
	return map[string]map[string][]byte{
		"FuzzParseRequest": {
			"go_mssqldb":       clientRequests["go_mssqldb"],
			"tedious_jtds":     clientRequests["tedious_jtds"],
			"freetds":          clientRequests["freetds"],
			"go_mssqldb_dac":   clientRequests["go_mssqldb_dac"],
			"padded":           []byte("\x04ABC\x00\x00\x00"),
			"after_nul":        []byte("\x04ABC\x00D"),
			"too_long":         append([]byte{4}, bytes.Repeat([]byte("A"), 40)...),
			"response_as_req":  resp("ServerName;A;;"),
			"dac_bad_version":  []byte("\x0F\x02A\x00"),
			"trailing_on_list": {0x03, 0x00},
		},
		"FuzzParseResponse": {
			"one_instance": resp("ServerName;GW01;InstanceName;SQLEXPRESS;IsClustered;No;Version;16.0.1000.6;tcp;50123;;"),
			"spec_style":   resp(specStyleList),
			"empty":        resp(""),
			"size_over":    {0x05, 0x10, 0x00, 'S'},
			"no_end":       resp("ServerName;A;InstanceName;B;tcp;1"),
			"bv_short":     resp("ServerName;A;bv;item;;"),
			"port_text":    resp("ServerName;A;tcp;x;;"),
			"nul":          resp("ServerName;A\x00;;"),
		},
	}
}

// FuzzParseRequest: no input panics; what parses re-encodes to a request
// that parses to the same value.
func FuzzParseRequest(f *testing.F) {
	for _, b := range clientRequests {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		enc, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed %+v from % X but cannot encode it: %v", r, b, err)
		}
		// The encoding is minimal: at most the NUL a client left out.
		if len(enc) > len(b)+1 {
			t.Fatalf("%+v re-encodes to %d bytes from %d", r, len(enc), len(b))
		}
		again, err := ParseRequest(enc)
		if err != nil || again != r {
			t.Fatalf("%+v -> % X -> %+v, %v", r, enc, again, err)
		}
	})
}

// FuzzParseResponse: no input panics; every accepted instance that can be
// written again parses back to itself, and a reply framed by
// AppendResponse is exactly its data plus 3 bytes.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte{0x05, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		data, err := ParseResponse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if framed, err := AppendResponse(nil, data); err != nil || !bytes.Equal(framed, b) {
			t.Fatalf("re-framed % X, %v; want % X", framed, err, b)
		}
		infos, err := ParseInstances(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		for _, in := range infos {
			text, err := AppendInstance(nil, in)
			if err != nil {
				continue // parsing is more lenient than writing
			}
			again, err := ParseInstances(text)
			if err != nil || len(again) != 1 || !reflect.DeepEqual(again[0], in) {
				t.Fatalf("%+v -> %q -> %+v, %v", in, text, again, err)
			}
		}
	})
}

// TestSeedCorpus checks that testdata/fuzz holds the seeds above; run with
// -update-corpus to rewrite them after changing seedCorpus.
func TestSeedCorpus(t *testing.T) {
	for target, seeds := range seedCorpus() {
		dir := filepath.Join("testdata", "fuzz", target)
		for name, b := range seeds {
			path := filepath.Join(dir, name)
			want := []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b))
			if *updateCorpus {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestSeedCorpus -update-corpus)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale (run go test -run TestSeedCorpus -update-corpus)", path)
			}
		}
	}
}
