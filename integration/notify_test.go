package integration

// systemd's notify protocol (Type=notify) against a fake NOTIFY_SOCKET: STATUS= lines while
// starting, READY=1 only once the mount serves, WATCHDOG=1 pings, STOPPING=1 on shutdown.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// sdMessage is one datagram received on the fake NOTIFY_SOCKET.
type sdMessage struct {
	vars     map[string]string
	raw      string
	stateErr error // for READY=1: reading MNT/.state the moment it arrived
}

// fakeNotifySocket listens on name (a path, or '@' and an abstract name) like systemd does and
// sends every datagram it receives on the returned channel. When a message says READY=1 it reads
// mnt/.state at once, before taking the next datagram.
func fakeNotifySocket(t *testing.T, name, mnt string) <-chan sdMessage {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("fake NOTIFY_SOCKET %s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	out := make(chan sdMessage, 1000)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(out)
				return
			}
			m := sdMessage{vars: map[string]string{}, raw: string(buf[:n])}
			for _, line := range strings.Split(m.raw, "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					m.vars[k] = v
				}
			}
			if m.vars["READY"] == "1" {
				_, m.stateErr = os.ReadFile(filepath.Join(mnt, ".state"))
			}
			out <- m
		}
	}()
	return out
}

// nextMessage returns the next message that sets key, failing the test after timeout. It also
// returns the messages skipped on the way.
func nextMessage(t *testing.T, ch <-chan sdMessage, key string, timeout time.Duration, p *trowfsbin.Proc) (sdMessage, []sdMessage) {
	t.Helper()
	var skipped []sdMessage
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("the fake NOTIFY_SOCKET closed before %s", key)
			}
			if _, ok := m.vars[key]; ok {
				return m, skipped
			}
			skipped = append(skipped, m)
		case <-deadline:
			stderr := ""
			if p != nil {
				stderr = p.Stderr()
			}
			t.Fatalf("no %s= on NOTIFY_SOCKET within %v (got %d other messages: %v); stderr:\n%s", key, timeout, len(skipped), skipped, stderr)
		}
	}
}

func TestNotifySendsStatusThenReadyOnceStateAnswersThenWatchdogAndStopping(t *testing.T) {
	data, mnt := t.TempDir(), filepath.Join(t.TempDir(), "mnt")
	if err := os.WriteFile(filepath.Join(data, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("/tmp", "sd") // a short path: sun_path holds 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "notify")
	msgs := fakeNotifySocket(t, sock, mnt)
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "400000")
	p := trowfsbin.Start(t, data, mnt)

	ready, before := nextMessage(t, msgs, "READY", 30*time.Second, p)
	if ready.stateErr != nil {
		t.Fatalf("READY=1 arrived before MNT/.state answered: %v", ready.stateErr)
	}
	if ready.vars["MAINPID"] != fmt.Sprint(p.Pid()) {
		t.Errorf("READY message %q: MAINPID should be trowfs's pid %d", ready.raw, p.Pid())
	}
	reconciling := false
	for _, m := range before {
		if strings.Contains(m.vars["STATUS"], "reconciling") {
			reconciling = true
		}
	}
	if len(before) == 0 || !reconciling {
		t.Fatalf("want STATUS= lines with the reconcile before READY=1, got %v", before)
	}
	if !strings.HasPrefix(ready.vars["STATUS"], "serving "+mnt) {
		t.Errorf("READY's STATUS = %q, want it to say the mount serves", ready.vars["STATUS"])
	}
	start := time.Now()
	nextMessage(t, msgs, "WATCHDOG", 3*time.Second, p)
	nextMessage(t, msgs, "WATCHDOG", 3*time.Second, p)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("two watchdog pings took %v with WATCHDOG_USEC=400ms (want one every 200ms)", d)
	}

	p.Stop(t) // exit 0 required
	stopping, _ := nextMessage(t, msgs, "STOPPING", 5*time.Second, p)
	if stopping.vars["STOPPING"] != "1" {
		t.Fatalf("STOPPING message %q", stopping.raw)
	}
}

func TestNotifyAbstractSocketNotPassedToExecCommand(t *testing.T) {
	data, mnt, tmp := t.TempDir(), filepath.Join(t.TempDir(), "mnt"), t.TempDir()
	name := fmt.Sprintf("@trowfs-test-notify-%d-%d", os.Getpid(), time.Now().UnixNano())
	msgs := fakeNotifySocket(t, name, mnt)
	t.Setenv("NOTIFY_SOCKET", name)
	t.Setenv("WATCHDOG_USEC", "10000000")
	env, goFile := filepath.Join(tmp, "env"), filepath.Join(tmp, "go")
	script := `echo "[$NOTIFY_SOCKET][$WATCHDOG_USEC]" > "$1"
while [ ! -e "$2" ]; do sleep 0.02; done`
	p := trowfsbin.Start(t, data, mnt, "--exec", "--", "sh", "-c", script, "sh", env, goFile)
	ready, _ := nextMessage(t, msgs, "READY", 30*time.Second, p)
	if ready.stateErr != nil {
		t.Fatalf("READY=1 arrived before MNT/.state answered: %v", ready.stateErr)
	}
	if got := strings.TrimSpace(waitFile(t, p, env, 10*time.Second)); got != "[][]" {
		t.Errorf("the command saw NOTIFY_SOCKET and WATCHDOG_USEC %s, want neither (they are trowfs's)", got)
	}
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := exitOf(t, p); code != 0 {
		t.Fatalf("trowfs exited %d, want the command's 0; stderr:\n%s", code, p.Stderr())
	}
	nextMessage(t, msgs, "STOPPING", 5*time.Second, p)
}

// A checkpoint that fails shows in the STATUS= line (systemctl status) until one succeeds again.
func TestNotifyStatusSaysSnapshotWritesFail(t *testing.T) {
	data, mnt := t.TempDir(), filepath.Join(t.TempDir(), "mnt")
	sockDir, err := os.MkdirTemp("/tmp", "sd") // a short path: sun_path holds 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "notify")
	msgs := fakeNotifySocket(t, sock, mnt)
	t.Setenv("NOTIFY_SOCKET", sock)
	p := trowfsbin.Start(t, data, mnt, "--checkpoint-interval", "100ms")
	if ready, _ := nextMessage(t, msgs, "READY", 30*time.Second, p); strings.Contains(ready.vars["STATUS"], "snapshot") {
		t.Fatalf("READY's STATUS = %q on a healthy mount", ready.vars["STATUS"])
	}

	// tree.snap made a directory: the rename that publishes a checkpoint fails, even for root.
	snap := filepath.Join(data, ".trowfs", "tree.snap")
	if err := os.RemoveAll(snap); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(snap, "in-the-way"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	status := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second) // STATUS= is refreshed every 5 s
		for {
			m, _ := nextMessage(t, msgs, "STATUS", time.Until(deadline), p)
			if strings.Contains(m.vars["STATUS"], "snapshot writes failing") == want {
				return
			}
		}
	}
	status(true)
	if err := os.RemoveAll(snap); err != nil {
		t.Fatal(err)
	}
	status(false)
	p.Stop(t)
}
