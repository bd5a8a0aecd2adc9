package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/trowfs/trowfs/internal/mountinfo"
)

// Kind says what serves a mount.
type Kind string

const (
	KindTrowfs   Kind = "trowfs"
	KindLoopback Kind = "loopback"
	// KindPassthroughHP is libfuse's example/passthrough_hp (bench/passthrough_hp/build.sh).
	KindPassthroughHP Kind = "passthrough_hp"
)

// Mount is one mount process started by the suite.
type Mount struct {
	Kind Kind
	Data string
	Mnt  string
	// Startup is the time from starting the process to the ready file appearing.
	Startup time.Duration

	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// active holds every mount that has been started and not yet stopped, so that StopAll can
// unmount them on any exit path.
var active struct {
	mu     sync.Mutex // guards m and closed
	m      map[*Mount]struct{}
	closed bool // set by Shutdown: no new mount may start
}

// errShutdown is a mount refused because the suite is shutting down.
var errShutdown = errors.New("the benchmark suite is shutting down")

// track records m; it fails once Shutdown has been called.
func track(m *Mount) error {
	active.mu.Lock()
	defer active.mu.Unlock()
	if active.closed {
		return errShutdown
	}
	if active.m == nil {
		active.m = make(map[*Mount]struct{})
	}
	active.m[m] = struct{}{}
	return nil
}

func untrack(m *Mount) {
	active.mu.Lock()
	defer active.mu.Unlock()
	delete(active.m, m)
}

// Shutdown stops every mount and refuses new ones from then on (for a signal handler that is
// about to exit while a workload may still be starting mounts).
func Shutdown() {
	active.mu.Lock()
	active.closed = true
	active.mu.Unlock()
	StopAll()
}

// StopAll stops every mount still running. It is safe to call from a signal handler goroutine
// and more than once.
func StopAll() {
	active.mu.Lock()
	ms := make([]*Mount, 0, len(active.m))
	for m := range active.m {
		ms = append(ms, m)
	}
	active.mu.Unlock()
	for _, m := range ms {
		_ = m.Stop()
	}
}

// MountError is a mount that did not come up.
type MountError struct {
	Kind Kind
	Mnt  string
	Err  error
	Log  string // the tail of the process's output
}

func (e *MountError) Error() string {
	return fmt.Sprintf("%s mount on %s: %v\n%s", e.Kind, e.Mnt, e.Err, e.Log)
}
func (e *MountError) Unwrap() error { return e.Err }

// StartMount starts bin mount process of kind on data and mnt with extra arguments and extra
// environment variables (may be nil), and waits up to timeout for its ready file.
func StartMount(kind Kind, bin, data, mnt, logDir string, timeout time.Duration, env []string, extra ...string) (*Mount, error) {
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	ready := filepath.Join(logDir, fmt.Sprintf("%s-%d.ready", kind, time.Now().UnixNano()))
	var args []string
	switch kind {
	case KindTrowfs:
		args = append([]string{"mount", data, mnt, "--ready-file", ready}, extra...)
	case KindLoopback:
		args = append([]string{"--ready-file", ready}, append(extra, data, mnt)...)
	case KindPassthroughHP:
		// It has no ready file: it is ready once the mount point is in mountinfo (the kernel
		// holds requests until the daemon has answered INIT). --foreground keeps it our child,
		// so that Stop's SIGTERM reaches it (libfuse's handler unmounts and exits).
		if IsMounted(mnt) {
			return nil, &MountError{kind, mnt, errors.New("already a mount point"), ""}
		}
		args = append([]string{"--foreground"}, append(extra, data, mnt)...)
	default:
		return nil, fmt.Errorf("unknown mount kind %q", kind)
	}
	m := &Mount{Kind: kind, Data: data, Mnt: mnt, exited: make(chan struct{}),
		logPath: strings.TrimSuffix(ready, ".ready") + ".log"}
	logf, err := os.Create(m.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if env != nil {
		m.cmd.Env = append(os.Environ(), env...)
	}
	start := time.Now()
	if err := m.cmd.Start(); err != nil {
		return nil, &MountError{kind, mnt, err, ""}
	}
	go func() { m.waitErr = m.cmd.Wait(); close(m.exited) }()
	if err := track(m); err != nil {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		<-m.exited
		forceUnmount(mnt)
		return nil, &MountError{kind, mnt, err, ""}
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	isReady := func() bool { _, err := os.Stat(ready); return err == nil }
	if kind == KindPassthroughHP {
		isReady = func() bool { return IsMounted(mnt) }
	}
	for {
		if isReady() {
			m.Startup = time.Since(start)
			_ = os.Remove(ready)
			return m, nil
		}
		select {
		case <-m.exited:
			untrack(m)
			forceUnmount(mnt)
			return nil, &MountError{kind, mnt, fmt.Errorf("exited before ready: %v", m.waitErr), m.LogTail(2000)}
		case <-deadline.C:
			_ = m.Stop()
			return nil, &MountError{kind, mnt, fmt.Errorf("not ready after %s", timeout), m.LogTail(2000)}
		case <-tick.C:
		}
	}
}

// Log returns the mount's output so far.
func (m *Mount) Log() string {
	b, _ := os.ReadFile(m.logPath)
	return string(b)
}

// Pid is the mount process's id.
func (m *Mount) Pid() int { return m.cmd.Process.Pid }

// LogTail returns the last n bytes of the mount's output.
func (m *Mount) LogTail(n int) string {
	b, _ := os.ReadFile(m.logPath)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// stopGrace is how long a mount may take to drain and write its snapshot after SIGTERM.
const stopGrace = 5 * time.Minute

// Stop sends SIGTERM to the mount process (this process only, by pid), waits for it to exit, and
// makes sure nothing stays mounted on Mnt. It is safe to call more than once.
func (m *Mount) Stop() error {
	m.stopOnce.Do(func() {
		defer untrack(m)
		select {
		case <-m.exited:
		default:
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.exited:
			case <-time.After(stopGrace):
				_ = m.cmd.Process.Kill()
				<-m.exited
				m.stopErr = fmt.Errorf("%s on %s did not stop within %s; killed", m.Kind, m.Mnt, stopGrace)
			}
		}
		if forceUnmount(m.Mnt) && m.stopErr == nil {
			m.stopErr = fmt.Errorf("%s on %s was still mounted after its process exited", m.Kind, m.Mnt)
		}
		if m.stopErr == nil && m.waitErr != nil && !m.exitedBySignal() {
			m.stopErr = fmt.Errorf("%s on %s exited with %v:\n%s", m.Kind, m.Mnt, m.waitErr, m.LogTail(2000))
		}
	})
	return m.stopErr
}

// exitedBySignal reports an exit status that is the normal end of a mount we stopped:
// passthrough_hp's main returns 1 whenever its loop ended through a signal (libfuse's exit handler
// stores the signal as the session's error), so status 1 after our SIGTERM is a clean stop.
func (m *Mount) exitedBySignal() bool {
	var ee *exec.ExitError
	return m.Kind == KindPassthroughHP && errors.As(m.waitErr, &ee) && ee.ExitCode() == 1
}

// forceUnmount detaches mnt if it is still a mount point and reports whether it had to.
func forceUnmount(mnt string) bool {
	if !IsMounted(mnt) {
		return false
	}
	_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
	return true
}

// IsMounted reports whether path is a mount point (from /proc/self/mountinfo).
func IsMounted(path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	ms, _ := mountinfo.Read()
	for _, m := range ms {
		if m.Point == abs {
			return true
		}
	}
	return false
}

// RSS returns the resident set size of pid in bytes (VmRSS of /proc/PID/status).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}

// runCmd runs a command with a timeout and returns its combined output.
func runCmd(ctx context.Context, timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tailBytes(out, 2000))
	}
	return out, nil
}

func tailBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
