package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trowfs/trowfs/fs/fstest"
	"github.com/trowfs/trowfs/internal/server"
)

func TestNotifierWatchdogOnlyForThisPid(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		pid, usec string
		want      time.Duration
	}{
		{"", "2000000", 2 * time.Second},
		{fmt.Sprint(os.Getpid()), "500000", 500 * time.Millisecond},
		{fmt.Sprint(os.Getpid() + 1), "500000", 0}, // meant for another process
		{"", "soon", 0},
		{"", "0", 0},
	} {
		t.Setenv("NOTIFY_SOCKET", "@trowfs-unit")
		t.Setenv("WATCHDOG_PID", c.pid)
		t.Setenv("WATCHDOG_USEC", c.usec)
		n := newNotifier(log)
		if n.watchdog != c.want {
			t.Errorf("WATCHDOG_PID=%q WATCHDOG_USEC=%q: watchdog %v, want %v", c.pid, c.usec, n.watchdog, c.want)
		}
		for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC"} {
			if v, ok := os.LookupEnv(k); ok {
				t.Errorf("%s=%q left in the environment for child processes", k, v)
			}
		}
	}
}

func TestNotifierIgnoresRelativeSocketAndSendsToAbstract(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	t.Setenv("NOTIFY_SOCKET", "relative/sock")
	if n := newNotifier(log); n.addr != nil {
		t.Fatalf("a relative NOTIFY_SOCKET was accepted: %v", n.addr)
	}
	name := fmt.Sprintf("@trowfs-unit-%d-%d", os.Getpid(), time.Now().UnixNano())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", name)
	n := newNotifier(log)
	n.status("loading")
	n.stopping()
	n.stopping() // sent once
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	var got []string
	for range 2 {
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
		got = append(got, string(buf[:k]))
	}
	if got[0] != "STATUS=loading" || got[1][:11] != "STOPPING=1\n" {
		t.Fatalf("datagrams %q", got)
	}
	_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if k, err := conn.Read(buf); err == nil {
		t.Fatalf("a second STOPPING was sent: %q", buf[:k])
	}
}

func TestWatchdogStopsPingingWhenTheFUSELoopIsGone(t *testing.T) {
	fstest.Require(t)
	log := slog.New(slog.DiscardHandler)
	data, mnt := t.TempDir(), filepath.Join(t.TempDir(), "mnt")
	srv, err := server.Start(context.Background(), server.Config{Data: data, Mnt: mnt, Layout: "plain", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	name := fmt.Sprintf("@trowfs-unit-dog-%d-%d", os.Getpid(), time.Now().UnixNano())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", name)
	t.Setenv("WATCHDOG_USEC", "200000")
	n := newNotifier(log)
	n.ready(srv)
	defer n.stopping()
	pings := func(d time.Duration) (count int) {
		buf := make([]byte, 4096)
		end := time.Now().Add(d)
		for {
			_ = conn.SetReadDeadline(end)
			k, err := conn.Read(buf)
			if err != nil {
				return count
			}
			if strings.Contains(string(buf[:k]), "WATCHDOG=1") {
				count++
			}
		}
	}
	if c := pings(time.Second); c < 3 {
		t.Fatalf("%d watchdog pings in 1 s with WATCHDOG_USEC=200ms while the mount serves, want about 10", c)
	}
	// The watchdog's own read of MNT/.state may hold the mount for a moment: EBUSY, try again.
	for i := 0; ; i++ {
		err := syscall.Unmount(mnt, 0)
		if err == nil {
			break
		}
		if err != syscall.EBUSY || i == 100 {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Wait()
	pings(150 * time.Millisecond) // one may have been on its way
	if c := pings(time.Second); c != 0 {
		t.Fatalf("%d watchdog pings after the FUSE server stopped serving, want none", c)
	}
}

// The start-up reconcile's counts go into the repeated STATUS= line, and the final counts are
// sent at once.
func TestNotifierStatusCarriesReconcileProgress(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	name := fmt.Sprintf("@trowfs-unit-%d-%d", os.Getpid(), time.Now().UnixNano())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", name)
	n := newNotifier(log)
	n.startup()
	defer n.endLoop()
	n.status("reconciling /data")
	n.progress("256 files, 1.0 MiB", false)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	read := func() string {
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(buf[:k])
	}
	if got := read(); got != "STATUS=reconciling /data" {
		t.Fatalf("first datagram %q", got)
	}
	if got := read(); !strings.HasPrefix(got, "STATUS=reconciling /data: 256 files, 1.0 MiB (") {
		t.Fatalf("repeated status %q, want the counts in it", got)
	}
	n.progress("300 files, 1.2 MiB", true)
	if got := read(); !strings.HasPrefix(got, "STATUS=reconciling /data: 300 files, 1.2 MiB (") {
		t.Fatalf("final status %q", got)
	}
}
