package browser

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Errors of LookupPort; returned wrapped, check them with errors.Is.
var (
	// ErrNoAnswer means no usable reply came before the context or the
	// Resolver's timeout ended, or nothing listens on the Browser port.
	// SQL Server Browser does not answer for an instance it does not know,
	// so an unknown instance name ends this way too.
	ErrNoAnswer = errors.New("no answer from SQL Server Browser")
	// ErrUnknownInstance means the Browser answered about other instances
	// but not the one asked for.
	ErrUnknownInstance = errors.New("instance unknown to SQL Server Browser")
	// ErrNoTCP means the instance has no TCP endpoint (named pipes only):
	// enable TCP/IP for it in SQL Server Configuration Manager.
	ErrNoTCP = errors.New("instance has no TCP endpoint")
	// ErrBadReply means only malformed replies came.
	ErrBadReply = errors.New("malformed reply from SQL Server Browser")
)

// Defaults of Resolver.
const (
	// DefaultLookupTimeout bounds a lookup whose context has no earlier
	// deadline.
	DefaultLookupTimeout = 5 * time.Second
	// DefaultRetransmit is how long a lookup waits for a reply before
	// sending its request again (UDP loses datagrams).
	DefaultRetransmit = time.Second
)

// Dialer makes the UDP socket of a lookup. *net.Dialer implements it.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Resolver asks SQL Server Browser for the TCP port of a named instance.
// The zero value is ready to use; it is safe for concurrent use.
type Resolver struct {
	// Port is the Browser's UDP port; 0 means 1434.
	Port int
	// Dialer makes the UDP socket; nil means a *net.Dialer.
	Dialer Dialer
	// Timeout bounds a lookup when the context has no earlier deadline;
	// 0 means DefaultLookupTimeout.
	Timeout time.Duration
	// Retransmit is the wait for a reply before the request is sent again;
	// 0 means DefaultRetransmit.
	Retransmit time.Duration
}

// LookupPort asks SQL Server Browser on host, UDP port 1434, for the TCP
// port of instance, with the zero Resolver: what a client does for a
// connection string naming host\instance.
func LookupPort(ctx context.Context, host, instance string) (int, error) {
	var r Resolver
	return r.LookupPort(ctx, host, instance)
}

// LookupPort sends CLNT_UCAST_INST for instance to host's Browser, again
// every Retransmit, until a reply comes or ctx (bounded by Timeout) ends,
// and returns the instance's TCP port. Errors wrap ErrNoAnswer,
// ErrUnknownInstance, ErrNoTCP or ErrBadReply, and the context's error
// when it ended the wait.
func (r *Resolver) LookupPort(ctx context.Context, host, instance string) (int, error) {
	port := r.Port
	if port == 0 {
		port = Port
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	req, err := Request{Type: TypeInstance, Instance: instance}.MarshalBinary()
	if err != nil {
		return 0, fmt.Errorf("sql browser %s: instance %q: %w", addr, instance, err)
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultLookupTimeout
	}
	retransmit := r.Retransmit
	if retransmit <= 0 {
		retransmit = DefaultRetransmit
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d Dialer = r.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return 0, fmt.Errorf("sql browser %s: %w", addr, err)
	}
	defer conn.Close()
	// Wake a pending read when ctx is canceled (the deadline is set per
	// attempt below).
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()

	fail := func(detail string, err error) (int, error) {
		return 0, fmt.Errorf("sql browser %s: instance %s: %w: %s: %w", addr, instance, ErrNoAnswer, detail, err)
	}
	// A whole reply: MC-SQLR allows up to 65,535 bytes of data.
	buf := make([]byte, 3+0xFFFF+1)
	var bad error
	for ctx.Err() == nil {
		if _, err := conn.Write(req); err != nil {
			return fail("sending the request", err)
		}
		wait := time.Now().Add(retransmit)
		if dl, ok := ctx.Deadline(); ok && dl.Before(wait) {
			wait = dl
		}
		_ = conn.SetReadDeadline(wait)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // send again, unless ctx is done
				}
				if errors.Is(err, syscall.ECONNREFUSED) {
					// ICMP port unreachable: nothing listens there.
					return fail("nothing listens on the port", err)
				}
				if ctx.Err() != nil {
					break
				}
				return fail("reading the reply", err)
			}
			port, err := portOf(buf[:n], instance)
			switch {
			case err == nil:
				return port, nil
			case errors.Is(err, ErrMalformed):
				bad = err // a stray or damaged datagram: keep waiting
				continue
			default:
				return 0, fmt.Errorf("sql browser %s: instance %s: %w", addr, instance, err)
			}
		}
	}
	if bad != nil {
		return 0, fmt.Errorf("sql browser %s: instance %s: %w: %w", addr, instance, ErrBadReply, bad)
	}
	return 0, fmt.Errorf("sql browser %s: instance %s: %w in %v (%w)", addr, instance, ErrNoAnswer, time.Since(start).Round(time.Millisecond), context.Cause(ctx))
}

// portOf finds instance in a reply datagram and returns its TCP port. The
// error wraps ErrMalformed, ErrUnknownInstance or ErrNoTCP.
func portOf(datagram []byte, instance string) (int, error) {
	data, err := ParseResponse(datagram)
	if err != nil {
		return 0, err
	}
	infos, err := ParseInstances(data)
	if err != nil {
		return 0, err
	}
	var names []string
	for _, in := range infos {
		if !strings.EqualFold(in.InstanceName, instance) {
			names = append(names, in.InstanceName)
			continue
		}
		if in.TCPPort == 0 {
			return 0, ErrNoTCP
		}
		return in.TCPPort, nil
	}
	return 0, fmt.Errorf("%w (the reply lists %q)", ErrUnknownInstance, names)
}
