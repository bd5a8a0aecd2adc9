package integration

// `trowfs mount DATA MNT --exec -- CMD` on a terminal (an interactive shell, `docker run -it`):
// the command must be able to read the terminal and get the terminal's ^C, as it would without
// trowfs in between.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// openPTY returns the master and the slave of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pty: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pty's slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// syncBuffer collects what the terminal shows.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startOnTerminal runs `trowfs mount DATA MNT ARGS...` as the session leader of a new
// pseudo-terminal, in the terminal's foreground process group, as a login shell's job is.
func startOnTerminal(t *testing.T, data, mnt string, args ...string) (cmd *exec.Cmd, master *os.File, screen *syncBuffer, done <-chan struct{}) {
	t.Helper()
	trowfsbin.Require(t)
	bin := trowfsbin.Build(t)
	master, slave := openPTY(t)
	cmd = exec.Command(bin, append([]string{"mount", data, mnt}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start trowfs: %v", err)
	}
	slave.Close() // the terminal now belongs to trowfs's session
	screen = &syncBuffer{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			_, _ = screen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
		if err := trowfsbin.Detach(mnt, true); err != nil {
			t.Errorf("detach %s: %v", mnt, err)
		}
	})
	return cmd, master, screen, exited
}

// waitForFile waits for path to exist with contents, or fails with what the terminal shows.
func waitForFile(t *testing.T, path string, timeout time.Duration, screen *syncBuffer) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v; the terminal shows:\n%s", path, timeout, screen.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func exitCode(t *testing.T, cmd *exec.Cmd, done <-chan struct{}, screen *syncBuffer) int {
	t.Helper()
	select {
	case <-done:
	case <-time.After(trowfsbin.StopTimeout):
		t.Fatalf("trowfs did not exit within %v; the terminal shows:\n%s", trowfsbin.StopTimeout, screen.String())
	}
	var ee *exec.ExitError
	if err := cmd.Wait(); err != nil && !errors.As(err, &ee) && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode()
}

// The command reads a line typed on the terminal and gets the terminal's ^C: its process group is
// made the terminal's foreground one. Left in a background group, its read would get SIGTTIN, it
// would stop for good, and trowfs would wait for it for ever.
func TestExecCommandReadsTheTerminalAndGetsItsInterrupt(t *testing.T) {
	data, mnt, tmp := t.TempDir(), filepath.Join(t.TempDir(), "mnt"), t.TempDir()
	ready, asked, got := filepath.Join(tmp, "ready"), filepath.Join(tmp, "asked"), filepath.Join(tmp, "got")
	script := `echo asked > "$1"
read line
echo "got:$line" > "$2"
trap 'echo interrupted >> "$2"; exit 130' INT
while :; do sleep 0.05; done`
	cmd, master, screen, done := startOnTerminal(t, data, mnt, "--ready-file", ready, "--exec-stop-timeout", "2s",
		"--exec", "--", "sh", "-c", script, "sh", asked, got)
	waitForFile(t, asked, 15*time.Second, screen)
	if _, err := master.Write([]byte("typed-line\n")); err != nil {
		t.Fatal(err)
	}
	if s := waitForFile(t, got, 5*time.Second, screen); strings.TrimSpace(s) != "got:typed-line" {
		t.Fatalf("the command read %q from the terminal, want got:typed-line", s)
	}
	// ^C on the terminal reaches the command once: it exits 130, and trowfs with it.
	if _, err := master.Write([]byte{0x03}); err != nil {
		t.Fatal(err)
	}
	code := exitCode(t, cmd, done, screen)
	if b, _ := os.ReadFile(got); strings.Count(string(b), "interrupted") != 1 {
		t.Errorf("the command saw ^C %d times, want once; it wrote %q", strings.Count(string(b), "interrupted"), b)
	}
	if code != 130 {
		t.Fatalf("trowfs exited %d after ^C, want the command's 130; the terminal shows:\n%s", code, screen.String())
	}
	if trowfsbin.Mounted(mnt) {
		t.Fatalf("%s still mounted after trowfs exited", mnt)
	}
}

// procState is the state letter of /proc/PID/stat ("S", "T", ...).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// envShell makes the test binary act as a tiny job-control shell (see jobShell).
const envShell = "TROWFS_TEST_JOB_SHELL"

// jobShell is what an interactive shell does with a foreground job: run it in its own process
// group with the terminal, wait for it to stop or exit (WUNTRACED), and report each to the
// files given; on a stop, do what `fg` does: give the job the terminal and continue it.
func jobShell() {
	args := strings.Split(os.Getenv(envShell), "\x1f")
	report, argv := args[0], args[1:]
	note := func(s string) {
		f, _ := os.OpenFile(report, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		fmt.Fprintln(f, s)
		f.Close()
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Foreground: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		note("start: " + err.Error())
		os.Exit(1)
	}
	pid := cmd.Process.Pid
	for {
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, syscall.WUNTRACED, nil); err != nil {
			note("wait: " + err.Error())
			os.Exit(1)
		}
		if ws.Stopped() {
			note("stopped")
			time.Sleep(300 * time.Millisecond)
			signal.Ignore(syscall.SIGTTOU)
			_ = unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, pid)
			_ = syscall.Kill(-pid, syscall.SIGCONT)
			note("continued")
			continue
		}
		note(fmt.Sprintf("exit %d", ws.ExitStatus()))
		os.Exit(0)
	}
}

func TestJobShellHelperProcess(t *testing.T) {
	if os.Getenv(envShell) == "" {
		t.Skip("only a helper process: the job-control shell of TestExecCommandStopsAndContinuesWithItsJob")
	}
	jobShell()
}

// ^Z on the terminal stops the command, as it would without trowfs; trowfs then stops too, so
// that the shell sees its job stopped and gets the terminal back (the command alone stopped
// would leave the shell waiting on a trowfs that never stops). Continued (fg), trowfs continues
// the command with the terminal.
func TestExecCommandStopsAndContinuesWithItsJob(t *testing.T) {
	trowfsbin.Require(t)
	bin := trowfsbin.Build(t)
	data, mnt, tmp := t.TempDir(), filepath.Join(t.TempDir(), "mnt"), t.TempDir()
	ready, asked, got, report := filepath.Join(tmp, "ready"), filepath.Join(tmp, "asked"), filepath.Join(tmp, "got"), filepath.Join(tmp, "report")
	script := `echo asked > "$1"
read line
echo "got:$line" > "$2"`
	master, slave := openPTY(t)
	shell := exec.Command(os.Args[0], "-test.run=^TestJobShellHelperProcess$")
	shell.Env = append(os.Environ(), envShell+"="+strings.Join([]string{report, bin, "mount", data, mnt, "--ready-file", ready,
		"--exec-stop-timeout", "2s", "--exec", "--", "sh", "-c", script, "sh", asked, got}, "\x1f"))
	shell.Stdin, shell.Stdout, shell.Stderr = slave, slave, slave
	shell.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := shell.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	screen := &syncBuffer{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			_, _ = screen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan struct{})
	go func() { _ = shell.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		case <-time.After(trowfsbin.StopTimeout):
			if pid := childOf(shell.Process.Pid); pid != 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL) // trowfs, and with it its command
			}
			_ = shell.Process.Kill()
			<-exited
		}
		if trowfsbin.Mounted(mnt) {
			_ = trowfsbin.Detach(mnt, true)
			t.Errorf("%s left mounted", mnt)
		}
	})
	waitForFile(t, asked, 15*time.Second, screen)
	time.Sleep(100 * time.Millisecond)                    // the command is in its read
	if _, err := master.Write([]byte{0x1a}); err != nil { // ^Z
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(report)
		if strings.Contains(string(b), "continued") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after ^Z the shell saw %q, want its job (trowfs) stopped; the terminal shows:\n%s", b, screen.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := master.Write([]byte("after-fg\n")); err != nil {
		t.Fatal(err)
	}
	if s := waitForFile(t, got, 5*time.Second, screen); strings.TrimSpace(s) != "got:after-fg" {
		t.Fatalf("the continued command read %q, want got:after-fg", s)
	}
	select {
	case <-exited:
	case <-time.After(trowfsbin.StopTimeout):
		t.Fatalf("trowfs did not exit; the terminal shows:\n%s", screen.String())
	}
	if b, _ := os.ReadFile(report); !strings.HasSuffix(string(b), "exit 0\n") {
		t.Fatalf("the shell saw %q, want trowfs to exit 0 at the end", b)
	}
}
