package test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"unicode/utf16"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// What "nothing in clear" means on a TDS leg, checked on captured bytes by
// the downgrade relay (proof_mitm_test.go) and the tshark capture
// (proof_wire_test.go).

// proofForm is one byte spelling of a secret on the wire.
type proofForm struct {
	what string
	b    []byte
}

// proofWireForms are the spellings of s a TDS leg could carry: ASCII (and
// UTF-8), UTF-16LE (SQL text, login names), and, for a password, the LOGIN7
// obfuscation of its UTF-16LE form (MS-TDS 2.2.6.4: swap the nibbles of
// each byte, then XOR 0xA5).
func proofWireForms(what, s string, password bool) []proofForm {
	u := proofUTF16LE(s)
	forms := []proofForm{{what + " (ASCII)", []byte(s)}, {what + " (UTF-16LE)", u}}
	if password {
		forms = append(forms, proofForm{what + " (LOGIN7-obfuscated UTF-16LE)", proofObfuscate(u)})
	}
	return forms
}

func proofUTF16LE(s string) []byte {
	var b []byte
	for _, r := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, r)
	}
	return b
}

// proofObfuscate applies LOGIN7's password obfuscation.
func proofObfuscate(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = (c<<4 | c>>4) ^ 0xA5
	}
	return out
}

// proofFind returns the forms present in b.
func proofFind(b []byte, forms []proofForm) []string {
	var hits []string
	for _, f := range forms {
		if bytes.Contains(b, f.b) {
			hits = append(hits, f.what)
		}
	}
	return hits
}

// proofLegReport is what a leg's bytes were made of.
type proofLegReport struct {
	clearTypes  []string // TDS packet types seen in clear, in order (deduplicated)
	tlsRecords  int      // TLS records, inside PRELOGIN packets or bare
	violations  []string // anything in clear beyond PRELOGIN and TLS
	unparseable int      // bytes at the end that form no whole unit
}

func (r proofLegReport) String() string {
	return fmt.Sprintf("clear TDS %v, %d TLS records, violations %v", r.clearTypes, r.tlsRecords, r.violations)
}

// proofAnalyzeLeg walks one direction of a TDS leg: TDS packets in clear
// (PRELOGIN 0x12, or the server's 0x04 answer to it, their payload an
// option table or TLS handshake records), then TLS records directly on TCP
// (TDS 7.x after the handshake, or TDS 8 from the first byte). Any other
// clear packet — LOGIN7 0x10, SQL batch 0x01, RPC 0x03, SSPI 0x11, or a
// reply after the PRELOGIN exchange — is a violation, as is anything that
// is neither TDS nor TLS.
func proofAnalyzeLeg(b []byte) proofLegReport {
	var r proofLegReport
	seen := map[string]bool{}
	note := func(s string) {
		if !seen[s] {
			seen[s] = true
			r.clearTypes = append(r.clearTypes, s)
		}
	}
	replies := 0
	for pos := 0; pos < len(b); {
		rest := b[pos:]
		if proofIsTLSRecord(rest) {
			n := 5 + int(binary.BigEndian.Uint16(rest[3:5]))
			if n > len(rest) {
				r.unparseable = len(rest)
				break
			}
			r.tlsRecords++
			pos += n
			continue
		}
		if len(rest) < tds.HeaderLen {
			r.unparseable = len(rest)
			break
		}
		typ := tds.PacketType(rest[0])
		n := int(binary.BigEndian.Uint16(rest[2:4]))
		if n < tds.HeaderLen {
			r.violations = append(r.violations, fmt.Sprintf("bytes at %d are neither TDS nor TLS (% x)", pos, rest[:min(8, len(rest))]))
			break
		}
		if n > len(rest) {
			r.unparseable = len(rest)
			break
		}
		note(typ.String())
		payload := rest[tds.HeaderLen:n]
		switch typ {
		case tds.PacketPrelogin:
			r.tlsRecords += proofCountTLSRecords(payload)
		case tds.PacketReply:
			// The PRELOGIN answer and TLS-in-PRELOGIN from older servers
			// are replies; a login reply in clear carries tokens.
			if proofCountTLSRecords(payload) == 0 {
				replies++
				if replies > 1 {
					r.violations = append(r.violations, fmt.Sprintf("a second clear reply at %d (a login or query reply in clear)", pos))
				}
			} else {
				r.tlsRecords += proofCountTLSRecords(payload)
			}
		default:
			r.violations = append(r.violations, fmt.Sprintf("%s packet in clear at %d", typ, pos))
		}
		pos += n
	}
	slices.Sort(r.violations)
	return r
}

func proofIsTLSRecord(b []byte) bool {
	return len(b) >= 5 && b[0] >= 0x14 && b[0] <= 0x17 && b[1] == 0x03 && b[2] <= 0x04
}

// proofCountTLSRecords counts the whole TLS records that make up payload
// exactly, or returns 0 if payload is not a sequence of TLS records.
func proofCountTLSRecords(payload []byte) int {
	n := 0
	for pos := 0; pos < len(payload); n++ {
		if !proofIsTLSRecord(payload[pos:]) {
			return 0
		}
		pos += 5 + int(binary.BigEndian.Uint16(payload[pos+3:pos+5]))
		if pos > len(payload) {
			// A record split over PRELOGIN packets: still TLS.
			return n + 1
		}
	}
	return n
}

// TestProofWireCheckControl is the wire check's negative control: a leg
// carrying LOGIN7 and a SQL batch in clear, as a login-only or unencrypted
// session would, is reported, and each form of the password and the query
// is found; an encrypted-looking leg is not.
func TestProofWireCheckControl(t *testing.T) {
	t.Parallel()
	login, err := (&tds.Login7Builder{UserName: proofSQLUser, Password: proofSQLPassword, Database: "master"}).Build()
	if err != nil {
		t.Fatal(err)
	}
	clear := slices.Concat(proofPrelogin(t, tds.EncryptNotSup), proofPacket(t, tds.PacketLogin7, login),
		proofPacket(t, tds.PacketSQLBatch, append(make([]byte, 22), proofUTF16LE(proofQuery)...)))
	rep := proofAnalyzeLeg(clear)
	if len(rep.violations) != 2 {
		t.Errorf("clear leg: %s; want the LOGIN7 and the SQL batch reported", rep)
	}
	proofSecrets := append(proofWireForms("password", proofSQLPassword, true), proofWireForms("query", proofQuery, false)...)
	hits := proofFind(slices.Concat(clear, []byte(proofSQLPassword), proofUTF16LE(proofSQLPassword), []byte(proofQuery)), proofSecrets)
	if len(hits) != len(proofSecrets) {
		t.Errorf("found %v, want all of %d forms", hits, len(proofSecrets))
	}
	// Login-only shape: PRELOGIN, TLS records inside PRELOGIN, then a
	// clear batch after a TLS record on TCP.
	loginOnly := slices.Concat(proofPrelogin(t, tds.EncryptOff),
		proofPacket(t, tds.PacketPrelogin, []byte{0x16, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00}),
		[]byte{0x17, 0x03, 0x03, 0x00, 0x03, 0xAA, 0xBB, 0xCC},
		proofPacket(t, tds.PacketSQLBatch, []byte{1, 2, 3}))
	if rep := proofAnalyzeLeg(loginOnly); len(rep.violations) != 1 {
		t.Errorf("login-only leg: %s; want the clear batch reported", rep)
	}
	encrypted := slices.Concat(proofPrelogin(t, tds.EncryptOn),
		proofPacket(t, tds.PacketPrelogin, []byte{0x16, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00}),
		[]byte{0x17, 0x03, 0x03, 0x00, 0x03, 0xAA, 0xBB, 0xCC})
	if rep := proofAnalyzeLeg(encrypted); len(rep.violations) != 0 || rep.tlsRecords != 2 {
		t.Errorf("encrypted leg: %s; want no violation and 2 TLS records", rep)
	}
	if hits := proofFind(encrypted, proofSecrets); len(hits) != 0 {
		t.Errorf("encrypted leg: found %v", hits)
	}
}
