package tds

import (
	"errors"
	"testing"
)

func TestDecodeUCS2(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, ""},
		{"ascii", []byte{'s', 0, 'a', 0}, "sa"},
		{"latin-1", []byte{0xFC, 0x00}, "ü"},
		{"BMP", []byte{0x2C, 0x67}, "本"},
		{"surrogate pair", []byte{0x3D, 0xD8, 0x00, 0xDE}, "😀"},
		{"lone high surrogate at end", []byte{'a', 0, 0x3D, 0xD8}, "a\uFFFD"},
		{"high surrogate then letter", []byte{0x3D, 0xD8, 'b', 0}, "\uFFFDb"},
		{"lone low surrogate", []byte{0x00, 0xDE, 'c', 0}, "\uFFFDc"},
		{"NUL kept", []byte{'x', 0, 0, 0}, "x\x00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeUCS2(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("%q %v, want %q", got, err, tc.want)
			}
		})
	}
	if _, err := decodeUCS2([]byte{'a', 0, 'b'}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("odd length: %v", err)
	}
}

func TestUCS2RoundTrip(t *testing.T) {
	for _, s := range []string{"", "sa", "Grüße", "日本語", "emoji 😀 and 𝄞", "x\x00y"} {
		b := appendUCS2(nil, s)
		if len(b) != 2*ucs2Len(s) {
			t.Fatalf("%q: %d bytes for %d units", s, len(b), ucs2Len(s))
		}
		if got, err := decodeUCS2(b); err != nil || got != s {
			t.Fatalf("%q -> %q %v", s, got, err)
		}
	}
	// Invalid UTF-8 is written as U+FFFD.
	if got, _ := decodeUCS2(appendUCS2(nil, "a\xffb")); got != "a\uFFFDb" {
		t.Fatalf("%q", got)
	}
}

func TestCursorNeverPanics(t *testing.T) {
	c := cursor{b: []byte{1, 2, 3}}
	if c.take(-1) != nil || c.err == nil {
		t.Fatal("negative take must fail")
	}
	c = cursor{b: []byte{1, 2, 3}}
	if c.u32() != 0 || c.u8() != 0 || !errors.Is(c.done(), ErrTruncated) {
		t.Fatal("reads after the end must return zero and stick")
	}
}

func TestLogin7AuthMethods(t *testing.T) {
	tests := []struct {
		l    Login7
		want AuthMethod
	}{
		{Login7{}, AuthNone},
		{Login7{UserName: "sa"}, AuthSQL},
		{Login7{HasPassword: true}, AuthSQL},
		{Login7{OptionFlags2: OptionFlags2IntegratedSecurity}, AuthIntegrated},
		{Login7{HasSSPI: true, UserName: "x"}, AuthIntegrated},
		{Login7{Features: []FeatureID{FeatureFedAuth}, OptionFlags2: OptionFlags2IntegratedSecurity}, AuthFedAuth},
	}
	for _, tc := range tests {
		if got := tc.l.Auth(); got != tc.want {
			t.Errorf("%v: %v, want %v", &tc.l, got, tc.want)
		}
	}
	for a, s := range map[AuthMethod]string{AuthNone: "none", AuthSQL: "sql", AuthIntegrated: "integrated", AuthFedAuth: "fedauth"} {
		if a.String() != s {
			t.Errorf("%d: %q", a, a.String())
		}
	}
}
