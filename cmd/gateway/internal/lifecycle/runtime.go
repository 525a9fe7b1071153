package lifecycle

import (
	"os"
	"runtime/debug"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
)

// applyRuntime sets the garbage collector's parameters from r. GOGC and
// GOMEMLIMIT in the environment win over the keys' defaults, so that a
// deployment that tuned the runtime the Go way keeps its settings.
func applyRuntime(r configs.Runtime) []zap.Field {
	var fields []zap.Field
	if pct := r.Percent(); pct != configs.DefaultGOGC || os.Getenv("GOGC") == "" {
		debug.SetGCPercent(pct)
		fields = append(fields, zap.Int("gogc", pct))
	} else {
		fields = append(fields, zap.String("gogc", "GOGC="+os.Getenv("GOGC")))
	}
	if limit, err := r.MemoryLimitBytes(); err == nil && (r.MemoryLimit != "" || os.Getenv("GOMEMLIMIT") == "") {
		debug.SetMemoryLimit(limit)
		if r.MemoryLimit != "" {
			fields = append(fields, zap.String("memory_limit", r.MemoryLimit))
		}
	} else if os.Getenv("GOMEMLIMIT") != "" {
		fields = append(fields, zap.String("memory_limit", "GOMEMLIMIT="+os.Getenv("GOMEMLIMIT")))
	}
	return fields
}

// prepareRuntime changes the collector's parameters when runtime changed.
func (g *Gateway) prepareRuntime(next *configs.Config) (stage, error) {
	if next.Runtime == g.cfg.Runtime {
		return funcStage{}, nil
	}
	if _, err := next.Runtime.MemoryLimitBytes(); err != nil {
		return nil, err // validated already; kept for safety
	}
	return funcStage{onCommit: func(next *configs.Config) []zap.Field {
		return []zap.Field{zap.Dict("runtime", applyRuntime(next.Runtime)...)}
	}}, nil
}
