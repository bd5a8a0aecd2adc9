package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// A STATUS= text is one line of the datagram: a newline in it (from a path or an error message
// naming a file of DATA) must not become an assignment of its own, such as READY=1 before the
// reconcile is done or a forged MAINPID=.
func TestNotifierStatusCannotInjectAssignments(t *testing.T) {
	name := fmt.Sprintf("@trowfs-unit-inject-%d-%d", os.Getpid(), time.Now().UnixNano())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", name)
	n := newNotifier(slog.New(slog.DiscardHandler))
	n.status("loading the snapshot and reconciling /srv/data\nREADY=1\nMAINPID=1\r\nERRNO=5")
	n.status("failed: open /srv/data/x\nSTOPPING=1: permission denied")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	for range 2 {
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		msg := string(buf[:k])
		lines := strings.Split(msg, "\n")
		if len(lines) != 1 || !strings.HasPrefix(msg, "STATUS=") {
			t.Errorf("datagram %q has %d assignments, want one STATUS=", msg, len(lines))
		}
	}
}

// No socket listening at NOTIFY_SOCKET (the manager went away, a stale variable): every message
// fails, is logged, and nothing panics or blocks.
func TestNotifierMissingSocketIsNotFatal(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/nonexistent/trowfs-notify.sock")
	var logged strings.Builder
	n := newNotifier(slog.New(slog.NewTextHandler(&logged, nil)))
	done := make(chan struct{})
	go func() {
		n.startup()
		n.status("loading")
		n.stopping()
		n.endLoop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("notifying a missing socket blocked")
	}
	if !strings.Contains(logged.String(), "could not notify the service manager") {
		t.Errorf("the failure was not logged: %q", logged.String())
	}
}
