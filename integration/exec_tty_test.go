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

// The command reads a line typed on the terminal. Before the fix the command ran in a
// background process group of the terminal: its read got SIGTTIN, it stopped for good, and
// trowfs waited for it for ever.
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
