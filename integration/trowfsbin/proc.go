package trowfsbin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts of the helpers. They are generous: the machine is small and shared.
const (
	ReadyTimeout = 30 * time.Second // from exec to the ready file
	StopTimeout  = 60 * time.Second // from SIGTERM to exit
	RunTimeout   = 2 * time.Minute  // one short command (verify, demo, --help)
)

// Proc is one running `trowfs mount`.
type Proc struct {
	Data      string // data directory (absolute)
	Mnt       string // mountpoint (absolute)
	ReadyFile string
	Args      []string // the command line after the binary

	cmd            *exec.Cmd
	stdout, stderr lockedBuffer
	done           chan struct{} // closed when the process has exited and been reaped
	code           int           // exit code (-1: killed by a signal); valid once done is closed
	state          *os.ProcessState
}

// live lists the processes started by Start that have not been cleaned up, for Emergency.
var live struct {
	mu    sync.Mutex // guards procs
	procs map[*Proc]struct{}
}

func register(p *Proc) {
	live.mu.Lock()
	defer live.mu.Unlock()
	if live.procs == nil {
		live.procs = map[*Proc]struct{}{}
	}
	live.procs[p] = struct{}{}
}

func unregister(p *Proc) {
	live.mu.Lock()
	defer live.mu.Unlock()
	delete(live.procs, p)
}

// Start runs `trowfs mount DATA MNT --ready-file F ARGS...` and returns once F exists and the
// mountpoint is mounted. With data and mnt both empty it runs the demo mode (`trowfs mount`
// without arguments) and fills Data and Mnt from the ready file and the mount table.
//
// The process runs with TMPDIR set to a directory of the test, so whatever it creates there
// (the demo registry) goes away with the test. At cleanup it gets SIGTERM; a mountpoint still
// mounted after it exited is detached and fails the test.
func Start(t testing.TB, data, mnt string, args ...string) *Proc {
	t.Helper()
	Require(t)
	bin := Build(t)
	tmp := t.TempDir() // removed after the cleanup below has unmounted: cleanups run last-in first-out
	p := &Proc{ReadyFile: filepath.Join(tmp, "ready"), done: make(chan struct{})}
	if data != "" || mnt != "" {
		p.Data, p.Mnt = cleanAbs(data), cleanAbs(mnt)
		p.Args = append(p.Args, "mount", data, mnt)
	} else {
		p.Args = append(p.Args, "mount")
	}
	p.Args = append(p.Args, "--ready-file", p.ReadyFile)
	p.Args = append(p.Args, args...)
	p.cmd = exec.Command(bin, p.Args...)
	p.cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	// Its own process group: a ^C to the test run does not reach it before the cleanup does.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start trowfs: %v", err)
	}
	register(p)
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		p.code = p.state.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() { p.cleanup(t) })

	deadline := time.Now().Add(ReadyTimeout)
	for {
		if b, err := os.ReadFile(p.ReadyFile); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			if p.Mnt == "" {
				p.Mnt = strings.TrimSpace(string(b))
			}
			break
		}
		select {
		case <-p.done:
			t.Fatalf("trowfs %s exited with code %d before it was ready; stderr:\n%s", strings.Join(p.Args, " "), p.code, p.Stderr())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.kill()
			t.Fatalf("trowfs %s: no ready file after %v; stderr:\n%s", strings.Join(p.Args, " "), ReadyTimeout, p.Stderr())
		}
	}
	m, ok := FindMount(p.Mnt)
	if !ok || !m.FUSE() {
		t.Fatalf("trowfs wrote its ready file but %s is not a FUSE mount (%+v); stderr:\n%s", p.Mnt, m, p.Stderr())
	}
	if p.Data == "" {
		p.Data = m.Source // trowfs names the mount after its data directory
	}
	return p
}

// cleanup stops the process if it still runs and fails the test if its mount survived it.
func (p *Proc) cleanup(t testing.TB) {
	defer unregister(p)
	if !p.Exited() {
		_ = p.Signal(syscall.SIGTERM)
		if _, ok := p.WaitExit(StopTimeout); !ok {
			t.Errorf("trowfs on %s did not exit within %v of SIGTERM at cleanup; killing it. stderr:\n%s", p.Mnt, StopTimeout, p.Stderr())
			p.kill()
		}
	}
	if Mounted(p.Mnt) {
		err := Detach(p.Mnt, true)
		t.Errorf("leftover mount: %s was still mounted after trowfs exited (detached lazily: %v); stderr:\n%s", p.Mnt, err, p.Stderr())
	}
}

// kill sends SIGKILL, reaps the process and detaches its mount.
func (p *Proc) kill() {
	_ = p.Signal(syscall.SIGKILL)
	p.WaitExit(10 * time.Second)
	_ = Detach(p.Mnt, true)
}

// Signal sends sig to the process (nothing once it has exited).
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitExit waits up to timeout for the process to exit and returns its exit code (-1 when a
// signal ended it) and whether it exited.
func (p *Proc) WaitExit(timeout time.Duration) (code int, exited bool) {
	select {
	case <-p.done:
		return p.code, true
	case <-time.After(timeout):
		return 0, false
	}
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM and requires a clean exit (code 0) within StopTimeout, with the
// mountpoint gone.
func (p *Proc) Stop(t testing.TB) {
	t.Helper()
	p.StopWith(t, syscall.SIGTERM)
}

// StopWith is Stop with another signal (SIGINT is what Ctrl-C sends).
func (p *Proc) StopWith(t testing.TB, sig os.Signal) {
	t.Helper()
	if p.Exited() {
		t.Fatalf("trowfs on %s had already exited with code %d; stderr:\n%s", p.Mnt, p.code, p.Stderr())
	}
	if err := p.Signal(sig); err != nil {
		t.Fatalf("%v: %v", sig, err)
	}
	p.waitClean(t, fmt.Sprint(sig))
}

// WaitClean requires the process to exit by itself (for example after an outside umount)
// with code 0 within StopTimeout, with the mountpoint gone.
func (p *Proc) WaitClean(t testing.TB) {
	t.Helper()
	p.waitClean(t, "the request to stop")
}

func (p *Proc) waitClean(t testing.TB, cause string) {
	t.Helper()
	code, ok := p.WaitExit(StopTimeout)
	if !ok {
		p.kill()
		t.Fatalf("trowfs on %s did not exit within %v of %s (killed); stderr:\n%s", p.Mnt, StopTimeout, cause, p.Stderr())
	}
	if code != 0 {
		t.Fatalf("trowfs exited with code %d after %s, want 0; stderr:\n%s", code, cause, p.Stderr())
	}
	if Mounted(p.Mnt) {
		err := Detach(p.Mnt, true)
		t.Fatalf("%s is still mounted after trowfs exited cleanly (detached: %v); stderr:\n%s", p.Mnt, err, p.Stderr())
	}
}

// Kill9 sends SIGKILL, waits for the process to die and cleans its dead mount (aborting the
// FUSE connection if needed, then umount -l). The test fails if the mount cannot be removed.
func (p *Proc) Kill9(t testing.TB) { p.Kill9Then(t, nil) }

// Kill9Then is Kill9 with dead, if not nil, called after the process died and before the dead
// mount is detached: while it stays mounted every new operation on it fails (ENOTCONN), whereas
// after the detach the mountpoint is a plain directory that would silently accept a workload's
// next writes. Stop workloads in dead.
func (p *Proc) Kill9Then(t testing.TB, dead func()) {
	t.Helper()
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	if _, ok := p.WaitExit(10 * time.Second); !ok {
		t.Fatalf("trowfs did not die within 10 s of SIGKILL")
	}
	if dead != nil {
		dead()
	}
	if err := Detach(p.Mnt, true); err != nil {
		t.Fatalf("clean the dead mount %s: %v", p.Mnt, err)
	}
	if Mounted(p.Mnt) {
		t.Fatalf("%s is still mounted after SIGKILL and umount -l", p.Mnt)
	}
}

// Stderr returns everything the process logged so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// Stdout returns everything the process printed so far.
func (p *Proc) Stdout() string { return p.stdout.String() }

// State reads and decodes MNT/rel/.state.
func (p *Proc) State(t testing.TB, rel string) StateDoc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.Mnt, rel, ".state"))
	if err != nil {
		t.Fatalf("read .state of /%s: %v", rel, err)
	}
	s, err := ParseState(b)
	if err != nil {
		t.Fatalf(".state of /%s is not JSON: %v\n%s", rel, err, b)
	}
	return s
}

// WaitSettled polls the root .state until nothing is pending (status not pending, no pending
// files) and what changed while unmounted is known, and returns that document. It fails the
// test after timeout.
func (p *Proc) WaitSettled(t testing.TB, timeout time.Duration) StateDoc {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := p.State(t, "")
		if s.Mount == nil {
			t.Fatalf("root .state has no mount object: %v", s.Raw)
		}
		if s.Status != "pending" && s.Mount.PendingFiles == 0 && s.Mount.Load.ChangedWhileUnmountedSettled {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mount did not settle within %v: status %s, pending files %d, load %+v", timeout, s.Status, s.Mount.PendingFiles, s.Mount.Load)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Result is the outcome of one short trowfs command.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// Run runs `trowfs ARGS...` to completion (at most RunTimeout) with an empty stdin.
func Run(t testing.TB, args ...string) Result {
	t.Helper()
	return RunWithin(t, RunTimeout, args...)
}

// RunWithin runs `trowfs ARGS...` with an empty stdin and fails the test if it has not finished
// within timeout. A command still running then gets SIGTERM (so a mount it made unmounts
// cleanly), and SIGKILL ten seconds later.
func RunWithin(t testing.TB, timeout time.Duration, args ...string) Result {
	t.Helper()
	bin := Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		t.Fatalf("trowfs %s did not finish within %v; stderr:\n%s", strings.Join(args, " "), timeout, r.Stderr)
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	default:
		t.Fatalf("trowfs %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// Verify runs `trowfs verify DATA --json --progress none ARGS...` and returns its exit code and
// decoded output. Codes 2 (usage) and 3 (in use) print no JSON and return a zero VerifyJSON;
// any other code without valid JSON on stdout fails the test, and so does an exit_code field
// that disagrees with the exit status.
func Verify(t testing.TB, data string, args ...string) (int, VerifyJSON) {
	t.Helper()
	r := Run(t, append([]string{"verify", data, "--json", "--progress", "none"}, args...)...)
	if r.Code == 2 || r.Code == 3 {
		return r.Code, VerifyJSON{}
	}
	v, err := ParseVerify([]byte(r.Stdout))
	if err != nil {
		t.Fatalf("trowfs verify --json exited %d without a JSON document (%v); stdout:\n%s\nstderr:\n%s", r.Code, err, r.Stdout, r.Stderr)
	}
	if v.ExitCode != r.Code {
		t.Errorf("trowfs verify --json: exit_code %d in the document but exit status %d", v.ExitCode, r.Code)
	}
	return r.Code, v
}

// Emergency is for a test process about to time out: it asks every trowfs started by Start to
// dump its goroutines (SIGQUIT), writes their logs to w, kills what is left, and aborts and
// detaches every FUSE mount under dir. It returns the mounts it found.
func Emergency(w io.Writer, dir string) []Mount {
	live.mu.Lock()
	procs := make([]*Proc, 0, len(live.procs))
	for p := range live.procs {
		procs = append(procs, p)
	}
	live.mu.Unlock()
	for _, p := range procs {
		_ = p.Signal(syscall.SIGQUIT)
	}
	for _, p := range procs {
		if _, ok := p.WaitExit(3 * time.Second); !ok {
			_ = p.Signal(syscall.SIGKILL)
			p.WaitExit(3 * time.Second)
		}
		fmt.Fprintf(w, "==== trowfs %s (pid %d), stderr:\n%s\n", strings.Join(p.Args, " "), p.Pid(), tail(p.Stderr(), 256<<10))
	}
	found, err := AbortUnder(dir)
	if err != nil {
		fmt.Fprintf(w, "==== cleaning mounts under %s: %v\n", dir, err)
	}
	return found
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// lockedBuffer is a bytes.Buffer safe for the writer goroutine of exec and concurrent readers.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Demo writes trowfs's generated demo registry (Trow's files-only layout) into dir with
// `trowfs demo DIR` and fails the test if that does not exit 0.
func Demo(t testing.TB, dir string) {
	t.Helper()
	if r := Run(t, "demo", dir); r.Code != 0 {
		t.Fatalf("trowfs demo %s: exit %d; stderr:\n%s", dir, r.Code, r.Stderr)
	}
}
