package regtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts for the servers the helpers start.
const (
	// readyTimeout bounds the wait for a freshly started server to answer GET /v2/.
	readyTimeout = 30 * time.Second
	// stopGrace is how long a server gets to exit after SIGTERM before it is killed.
	stopGrace = 10 * time.Second
	// startAttempts bounds the retries when a free port was taken between choosing and binding it.
	startAttempts = 3
)

// Registry is a registry server started by a helper. It stops on t.Cleanup, or earlier by Stop.
type Registry struct {
	// Addr is host:port on 127.0.0.1, as the conformance suite and clients want it.
	Addr string
	// Dir is the storage directory the registry serves (a plain directory or a mount).
	Dir string
	// ConfigPath is the distribution registry's configuration file; empty for olareg.
	ConfigPath string

	proc *process
}

// URL is the registry's base URL, http://Addr.
func (r *Registry) URL() string { return "http://" + r.Addr }

// Stop stops the registry now (SIGTERM, then SIGKILL) and waits for it to exit. It is safe to call
// more than once; the cleanup registered at start calls it too. Offline tools such as
// `registry garbage-collect` must only run on a stopped registry's directory.
func (r *Registry) Stop(tb testing.TB) {
	tb.Helper()
	r.proc.stop(tb)
}

// process is one server process bound to a test.
type process struct {
	name string
	cmd  *exec.Cmd
	// out collects the process's stdout and stderr (a lockedBuffer: exec copies into it from its own
	// goroutines while the test may read it).
	out *lockedBuffer
	// exited is closed when the process has exited; waitErr is valid after that.
	exited  chan struct{}
	waitErr error

	// stopOnce makes stop idempotent (cleanup and an explicit Stop may both call it).
	stopOnce sync.Once
}

// lockedBuffer is a bytes.Buffer safe for concurrent Write and String.
type lockedBuffer struct {
	// mu guards buf.
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startProcess starts argv[0] with its output captured. The caller registers the cleanup.
func startProcess(name string, argv []string, env []string) (*process, error) {
	p := &process{name: name, out: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.Env = env
	// Its own process group, so a terminal's Ctrl-C reaches the test first and the test stops it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("regtest: start %s: %w", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop sends SIGTERM, waits up to stopGrace, then SIGKILLs. It signals only this process, by pid.
func (p *process) stop(tb testing.TB) {
	tb.Helper()
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(stopGrace):
			tb.Errorf("regtest: %s did not exit %v after SIGTERM; killing it", p.name, stopGrace)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// logOnFailure shows the process's output when the test has failed.
func (p *process) logOnFailure(tb testing.TB) {
	if tb.Failed() {
		tb.Logf("regtest: output of %s:\n%s", p.name, tail(p.out.String(), 3000))
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("regtest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// errExited reports that a server exited before it answered.
var errExited = errors.New("server exited before it answered")

// waitReady polls GET http://addr/v2/ until it answers 200 or 401, the process exits, or the
// timeout passes.
func waitReady(p *process, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%w (%v)", errExited, p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("regtest: %s not answering on %s after %v", p.name, addr, readyTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startServer starts a registry server on a free port: argvFor builds its command line for a port.
// A port taken between choosing and binding is retried on another.
func startServer(tb testing.TB, name string, argvFor func(port int) ([]string, error)) (*process, string) {
	tb.Helper()
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		argv, err := argvFor(port)
		if err != nil {
			tb.Fatal(err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p, err := startProcess(name, argv, toolEnv())
		if err != nil {
			tb.Fatal(err)
		}
		err = waitReady(p, addr)
		if err == nil {
			tb.Cleanup(func() {
				p.stop(tb)
				p.logOnFailure(tb)
			})
			return p, addr
		}
		p.stop(tb)
		lastErr = fmt.Errorf("%w\n%s", err, tail(p.out.String(), 4000))
		if !errors.Is(err, errExited) {
			break
		}
	}
	tb.Fatalf("regtest: starting %s: %v", name, lastErr)
	return nil, ""
}

// toolEnv is the environment of the tools: the test's, with HOME and PATH guaranteed and the
// conformance suite's OCI_* settings removed so that only the ones a helper sets apply.
func toolEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if len(kv) >= 4 && kv[:4] == "OCI_" {
			continue
		}
		env = append(env, kv)
	}
	if os.Getenv("HOME") == "" {
		env = append(env, "HOME=/root")
	}
	if os.Getenv("PATH") == "" {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	return env
}

// tail returns the last n bytes of s, marked when cut.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]\n" + s[len(s)-n:]
}
