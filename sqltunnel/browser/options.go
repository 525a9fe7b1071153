package browser

import "fmt"

// Defaults of the options below.
const (
	// DefaultRate is the sustained number of replies per second one source
	// address gets. Every new connection of go-mssqldb asks the Browser
	// once, so a client's pool filling up is a burst of requests; the
	// limit only has to stop the responder being a reflector.
	DefaultRate = 20
	// DefaultBurst is the number of replies a source can get at once
	// (a connection pool of that size starting at once is answered).
	DefaultBurst = 100
	// DefaultMaxSources bounds the rate limiter's table of source addresses
	// per generation; it never holds more than twice this many.
	DefaultMaxSources = 4096
)

// Option customises a Responder; see the With functions.
type Option func(*options)

type options struct {
	rate       float64
	burst      int
	maxSources int
	metrics    *Metrics
}

func defaultOptions() options {
	return options{rate: DefaultRate, burst: DefaultBurst, maxSources: DefaultMaxSources}
}

func (o *options) validate() error {
	switch {
	case !(o.rate > 0):
		return fmt.Errorf("sql browser: rate limit %v per second: must be positive", o.rate)
	case o.burst < 1:
		return fmt.Errorf("sql browser: burst %d: must be at least 1", o.burst)
	case o.maxSources < 1:
		return fmt.Errorf("sql browser: max sources %d: must be at least 1", o.maxSources)
	}
	return nil
}

// WithRateLimit sets how many replies one source address gets: perSecond
// sustained, burst at once (a token bucket). The limit cannot be switched
// off: New refuses a rate that is not positive or a burst under 1.
// Default DefaultRate and DefaultBurst.
func WithRateLimit(perSecond float64, burst int) Option {
	return func(o *options) { o.rate, o.burst = perSecond, burst }
}

// WithMaxSources bounds the table of source addresses the rate limiter
// tracks: n per generation, 2n at most. Sources beyond it share one bucket,
// so spoofing many addresses neither grows memory nor multiplies replies.
// Default DefaultMaxSources.
func WithMaxSources(n int) Option {
	return func(o *options) { o.maxSources = n }
}

// WithMetrics makes the responder count requests and replies in m. Nil
// (the default) records nothing.
func WithMetrics(m *Metrics) Option {
	return func(o *options) { o.metrics = m }
}
