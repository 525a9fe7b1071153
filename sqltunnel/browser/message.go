package browser

import (
	"bytes"
	"errors"
	"fmt"
)

// MessageType is the first byte of an MC-SQLR datagram (MC-SQLR 2.2).
type MessageType byte

// Message types.
const (
	// TypeBroadcast is CLNT_BCAST_EX (2.2.1): which instances are there?
	// Sent broadcast or multicast by enumerating clients, and unicast by
	// tedious and jTDS to find one instance among all.
	TypeBroadcast MessageType = 0x02
	// TypeUnicast is CLNT_UCAST_EX (2.2.2), the same question asked of one
	// host; go-mssqldb sends it.
	TypeUnicast MessageType = 0x03
	// TypeInstance is CLNT_UCAST_INST (2.2.3): how do I reach this instance?
	// FreeTDS sends it.
	TypeInstance MessageType = 0x04
	// TypeResponse is SVR_RESP (2.2.5), the only server message.
	TypeResponse MessageType = 0x05
	// TypeDAC is CLNT_UCAST_DAC (2.2.4): the dedicated administrator
	// connection's port.
	TypeDAC MessageType = 0x0F
)

// String returns the MC-SQLR name in lower case (clnt_ucast_inst), as used
// in metric labels, or "other".
func (t MessageType) String() string {
	switch t {
	case TypeBroadcast:
		return "clnt_bcast_ex"
	case TypeUnicast:
		return "clnt_ucast_ex"
	case TypeInstance:
		return "clnt_ucast_inst"
	case TypeResponse:
		return "svr_resp"
	case TypeDAC:
		return "clnt_ucast_dac"
	}
	return "other"
}

// Limits of MC-SQLR.
const (
	// MaxRequestInstance is the longest instance name a CLNT_UCAST_INST or
	// CLNT_UCAST_DAC request carries, in bytes, without its terminating NUL
	// (MC-SQLR 2.2.3, 2.2.4).
	MaxRequestInstance = 32
	// MaxInstanceData bounds RESP_DATA in reply to CLNT_UCAST_INST
	// (MC-SQLR 2.2.5).
	MaxInstanceData = 1024
	// MaxListData bounds RESP_DATA in reply to CLNT_BCAST_EX and
	// CLNT_UCAST_EX. MC-SQLR allows 65,535 bytes, but the reply is one UDP
	// datagram and an IPv4 datagram carries at most 65,507 bytes: 3 of them
	// are the SVR_RESP header.
	MaxListData = 65507 - 3
	// maxRequest bounds a whole request datagram: the longest valid one is
	// a DAC request (1 + 1 + 32 + NUL); a little padding is tolerated.
	maxRequest = 64
	// maxServerName and maxVersion bound the SERVERNAME and VERSION_STRING
	// of a reply (MC-SQLR 2.2.5).
	maxServerName = 255
	maxVersion    = 16
	// dacProtocolVersion is PROTOCOLVERSION of CLNT_UCAST_DAC.
	dacProtocolVersion = 0x01
)

// Errors of the codec; returned wrapped, check them with errors.Is.
var (
	// ErrMalformed is any datagram that is not a well-formed MC-SQLR message.
	ErrMalformed = errors.New("malformed MC-SQLR message")
	// ErrTooLong is a value or reply over an MC-SQLR limit.
	ErrTooLong = errors.New("over the MC-SQLR size limit")
	// ErrInvalidValue is a value that cannot be written in a reply: empty,
	// or containing ';' or NUL, which delimit the reply's fields.
	ErrInvalidValue = errors.New("invalid MC-SQLR value")
)

// Request is a client's question to SQL Server Browser.
type Request struct {
	Type MessageType
	// Instance is the instance name of CLNT_UCAST_INST and CLNT_UCAST_DAC,
	// as sent (clients send any case; match it case-insensitively).
	Instance string
}

// ParseRequest decodes a request datagram. The instance name of
// CLNT_UCAST_INST and CLNT_UCAST_DAC may end with a NUL (the specification
// requires one; some clients pad with more); bytes after the first NUL must
// all be NUL. Anything else, including a response or an unknown type, is an
// error wrapping ErrMalformed.
func ParseRequest(b []byte) (Request, error) {
	if len(b) == 0 {
		return Request{}, fmt.Errorf("%w: empty datagram", ErrMalformed)
	}
	if len(b) > maxRequest {
		return Request{}, fmt.Errorf("%w: %d-byte request, at most %d", ErrMalformed, len(b), maxRequest)
	}
	r := Request{Type: MessageType(b[0])}
	switch r.Type {
	case TypeBroadcast, TypeUnicast:
		if len(b) != 1 {
			return Request{}, fmt.Errorf("%w: %s with %d trailing bytes", ErrMalformed, r.Type, len(b)-1)
		}
		return r, nil
	case TypeInstance:
		name, err := requestName(b[1:])
		if err != nil {
			return Request{}, fmt.Errorf("%s: %w", r.Type, err)
		}
		r.Instance = name
		return r, nil
	case TypeDAC:
		if len(b) < 2 || b[1] != dacProtocolVersion {
			return Request{}, fmt.Errorf("%w: %s without protocol version 1", ErrMalformed, r.Type)
		}
		name, err := requestName(b[2:])
		if err != nil {
			return Request{}, fmt.Errorf("%s: %w", r.Type, err)
		}
		r.Instance = name
		return r, nil
	}
	return Request{}, fmt.Errorf("%w: type 0x%02X is not a request", ErrMalformed, b[0])
}

// requestName decodes a NUL-terminated (or unterminated) instance name.
func requestName(b []byte) (string, error) {
	name := b
	if i := bytes.IndexByte(b, 0); i >= 0 {
		name = b[:i]
		for _, c := range b[i:] {
			if c != 0 {
				return "", fmt.Errorf("%w: bytes after the instance name's NUL", ErrMalformed)
			}
		}
	}
	switch {
	case len(name) == 0:
		return "", fmt.Errorf("%w: empty instance name", ErrMalformed)
	case len(name) > MaxRequestInstance:
		return "", fmt.Errorf("%w: %d-byte instance name, at most %d", ErrMalformed, len(name), MaxRequestInstance)
	case bytes.IndexByte(name, ';') >= 0:
		return "", fmt.Errorf("%w: ';' in the instance name", ErrMalformed)
	}
	return string(name), nil
}

// AppendBinary appends the request datagram to dst: the type byte, and for
// CLNT_UCAST_INST and CLNT_UCAST_DAC the instance name with its NUL.
func (r Request) AppendBinary(dst []byte) ([]byte, error) {
	switch r.Type {
	case TypeBroadcast, TypeUnicast:
		if r.Instance != "" {
			return dst, fmt.Errorf("%w: %s carries no instance name", ErrInvalidValue, r.Type)
		}
		return append(dst, byte(r.Type)), nil
	case TypeInstance, TypeDAC:
		if _, err := requestName([]byte(r.Instance)); err != nil || r.Instance == "" {
			return dst, fmt.Errorf("%w: instance name %q", ErrInvalidValue, r.Instance)
		}
		dst = append(dst, byte(r.Type))
		if r.Type == TypeDAC {
			dst = append(dst, dacProtocolVersion)
		}
		dst = append(dst, r.Instance...)
		return append(dst, 0), nil
	}
	return dst, fmt.Errorf("%w: type %s is not a request", ErrInvalidValue, r.Type)
}

// MarshalBinary returns the request datagram.
func (r Request) MarshalBinary() ([]byte, error) { return r.AppendBinary(nil) }

// ParseResponse returns RESP_DATA of an SVR_RESP datagram. RESP_SIZE must
// be exactly the number of bytes that follow it: the reply is one datagram,
// so a shorter or longer datagram is damaged or not a reply.
func ParseResponse(b []byte) ([]byte, error) {
	if len(b) < 3 || MessageType(b[0]) != TypeResponse {
		return nil, fmt.Errorf("%w: not an SVR_RESP", ErrMalformed)
	}
	size := int(b[1]) | int(b[2])<<8
	if size != len(b)-3 {
		return nil, fmt.Errorf("%w: RESP_SIZE %d but %d bytes follow", ErrMalformed, size, len(b)-3)
	}
	return b[3:], nil
}

// AppendResponse appends an SVR_RESP datagram carrying data to dst: 0x05,
// the 2-byte little-endian size, and data, with nothing else.
func AppendResponse(dst, data []byte) ([]byte, error) {
	if len(data) > 0xFFFF {
		return dst, fmt.Errorf("%w: %d bytes of RESP_DATA", ErrTooLong, len(data))
	}
	dst = append(dst, byte(TypeResponse), byte(len(data)), byte(len(data)>>8))
	return append(dst, data...), nil
}
