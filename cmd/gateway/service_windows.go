//go:build windows

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/gateway-project/gateway/cmd/gateway/internal/lifecycle"
	"github.com/gateway-project/gateway/configs"
)

// Event IDs the service writes to the Application event log.
const (
	eventStarted = 1
	eventStopped = 2
	eventFailed  = 3
)

// serviceAccepts are the controls a running gateway service answers.
const serviceAccepts = svc.AcceptStop | svc.AcceptShutdown | svc.AcceptParamChange

func serviceSupported(string) error { return nil }

// runningAsService reports whether the service control manager started the
// process.
func runningAsService() bool {
	ok, err := svc.IsWindowsService()
	return err == nil && ok
}

// runService runs `gateway run` (args, as registered by install) under the
// service control manager, logging to <storage>/gateway.log.
func runService(args []string) error {
	name, rest := splitServiceArgs(args)
	elog, err := eventlog.Open(name)
	if err != nil {
		elog = nil // the source is registered by install; without it, no events
	}
	report := func(id uint32, failed bool, msg string) {
		if elog == nil {
			return
		}
		if failed {
			_ = elog.Error(id, msg)
		} else {
			_ = elog.Info(id, msg)
		}
	}
	loaded, err := configs.Load(configs.Options{File: configFromArgs(rest)})
	if err != nil {
		report(eventFailed, true, "gateway: "+err.Error())
		return err
	}
	logPath := serviceLogFile(loaded.Config)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		report(eventFailed, true, "gateway: log directory: "+err.Error())
		return err
	}
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		report(eventFailed, true, "gateway: log file: "+err.Error())
		return err
	}
	defer out.Close()
	h := &serviceHandler{args: rest, out: out, report: report, drain: loaded.DrainTimeout}
	if err := svc.Run(name, h); err != nil {
		report(eventFailed, true, "gateway: "+err.Error())
		return err
	}
	return h.err
}

// serviceHandler is the svc.Handler of the gateway service.
type serviceHandler struct {
	args   []string
	out    *os.File
	report func(id uint32, failed bool, msg string)
	drain  time.Duration
	err    error
}

func (h *serviceHandler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending, WaitHint: 60000}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reloads := make(chan struct{}, 1)
	ctx = withReloadRequests(ctx, reloads)
	ctx = withNotifier(ctx, &serviceLifecycle{status: status})
	done := make(chan error, 1)
	go func() { done <- run(ctx, h.args, h.out, h.out) }()
	for {
		select {
		case err := <-done:
			h.err = err
			if err != nil {
				h.report(eventFailed, true, "gateway stopped: "+err.Error())
				return true, uint32(exitCode(err))
			}
			h.report(eventStopped, false, "gateway stopped")
			return false, 0
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending, WaitHint: uint32((h.drain + 10*time.Second).Milliseconds())}
				cancel()
			case svc.ParamChange:
				select {
				case reloads <- struct{}{}:
				default:
				}
				status <- c.CurrentStatus
			}
		}
	}
}

// serviceLifecycle reports the gateway's state to the service manager.
type serviceLifecycle struct {
	status chan<- svc.Status
}

func (l *serviceLifecycle) Ready(string) {
	l.status <- svc.Status{State: svc.Running, Accepts: serviceAccepts}
}

func (l *serviceLifecycle) Reloading() {}

func (l *serviceLifecycle) Stopping(_ string, within time.Duration) {
	l.status <- svc.Status{State: svc.StopPending, WaitHint: uint32(within.Milliseconds())}
}

func installService(spec serviceSpec) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connecting to the service manager (run as Administrator): %w", err)
	}
	defer m.Disconnect()
	if s, err := m.OpenService(spec.Name); err == nil {
		s.Close()
		return fmt.Errorf("service %s already exists; remove it first: gateway service uninstall --name %s", spec.Name, spec.Name)
	}
	s, err := m.CreateService(spec.Name, spec.Exe, mgr.Config{
		DisplayName:  spec.DisplayName,
		Description:  spec.Description,
		StartType:    mgr.StartAutomatic,
		ErrorControl: mgr.ErrorNormal,
	}, spec.Args...)
	if err != nil {
		return fmt.Errorf("creating service %s: %w", spec.Name, err)
	}
	defer s.Close()
	// Restart after a crash or a failed start: after 5 s, then 30 s, then
	// every minute; the count resets after a day without failure.
	actions := []mgr.RecoveryAction{
		{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
		{Type: mgr.ServiceRestart, Delay: time.Minute},
	}
	if err := s.SetRecoveryActions(actions, 24*60*60); err != nil {
		_ = s.Delete()
		return fmt.Errorf("setting recovery actions of %s: %w", spec.Name, err)
	}
	// An exit with an error (exit code 1) is a failure too, not only a crash.
	_ = s.SetRecoveryActionsOnNonCrashFailures(true)
	_ = eventlog.Remove(spec.Name) // left by an earlier install
	if err := eventlog.InstallAsEventCreate(spec.Name, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil {
		_ = s.Delete()
		return fmt.Errorf("registering event log source %s: %w", spec.Name, err)
	}
	return nil
}

func uninstallService(name string, timeout time.Duration) error {
	m, s, err := openService(name)
	if err != nil {
		return err
	}
	defer m.Disconnect()
	defer s.Close()
	if st, err := s.Query(); err == nil && st.State != svc.Stopped {
		if err := stopOpened(s, timeout); err != nil {
			return err
		}
	}
	if err := s.Delete(); err != nil {
		return fmt.Errorf("removing service %s: %w", name, err)
	}
	_ = eventlog.Remove(name)
	return nil
}

func startService(name string, timeout time.Duration) error {
	m, s, err := openService(name)
	if err != nil {
		return err
	}
	defer m.Disconnect()
	defer s.Close()
	if err := s.Start(); err != nil {
		return fmt.Errorf("starting service %s: %w", name, err)
	}
	return waitState(s, svc.Running, timeout)
}

func stopService(name string, timeout time.Duration) error {
	m, s, err := openService(name)
	if err != nil {
		return err
	}
	defer m.Disconnect()
	defer s.Close()
	return stopOpened(s, timeout)
}

func stopOpened(s *mgr.Service, timeout time.Duration) error {
	if _, err := s.Control(svc.Stop); err != nil && !errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
		return fmt.Errorf("stopping service %s: %w", s.Name, err)
	}
	return waitState(s, svc.Stopped, timeout)
}

func openService(name string) (*mgr.Mgr, *mgr.Service, error) {
	m, err := mgr.Connect()
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to the service manager (run as Administrator): %w", err)
	}
	s, err := m.OpenService(name)
	if err != nil {
		m.Disconnect()
		return nil, nil, fmt.Errorf("service %s: %w", name, err)
	}
	return m, s, nil
}

// waitState polls the service until it reaches want or timeout passes.
func waitState(s *mgr.Service, want svc.State, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := s.Query()
		if err != nil {
			return fmt.Errorf("querying service %s: %w", s.Name, err)
		}
		if st.State == want {
			return nil
		}
		if want == svc.Running && st.State == svc.Stopped {
			return fmt.Errorf("service %s stopped while starting; see its log and the Application event log", s.Name)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("service %s did not reach the wanted state within %s (state %d)", s.Name, timeout, st.State)
		}
		time.Sleep(300 * time.Millisecond) // polling the service manager, which has no notification here
	}
}

// withNotifier makes the gateway started under ctx report to n.
func withNotifier(ctx context.Context, n lifecycle.Notifier) context.Context {
	return context.WithValue(ctx, notifierKey{}, n)
}

// withReloadRequests makes a gateway started under ctx also reload when ch
// receives (the Windows service manager's "paramchange").
func withReloadRequests(ctx context.Context, ch <-chan struct{}) context.Context {
	return context.WithValue(ctx, reloadKey{}, ch)
}
