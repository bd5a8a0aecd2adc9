package api

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestListenLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "LocalHost:0", "127.0.0.2:0"} {
		l, err := Listen(addr)
		if err != nil {
			t.Errorf("Listen(%q): %v", addr, err)
			continue
		}
		host, _, _ := net.SplitHostPort(l.Addr().String())
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			t.Errorf("Listen(%q) bound %s", addr, l.Addr())
		}
		l.Close()
	}
	l, err := Listen("[::1]:0")
	if err != nil {
		// Some containers have no IPv6 loopback; the refusal logic is
		// still tested below with ::1-free addresses.
		t.Logf("Listen([::1]:0): %v (IPv6 loopback unavailable here)", err)
		if errors.Is(err, ErrNotLoopback) {
			t.Fatal("[::1] refused as non-loopback")
		}
	} else {
		l.Close()
	}
}

func TestListenRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "192.0.2.1:0", "10.1.2.3:8080", "[2001:db8::1]:0",
		"example.com:0", "localhost.example.com:0", "[::ffff:192.0.2.1]:0"} {
		l, err := Listen(addr)
		if err == nil {
			l.Close()
			t.Errorf("Listen(%q) succeeded, want a refusal", addr)
			continue
		}
		var le *ListenError
		if !errors.Is(err, ErrNotLoopback) || !errors.As(err, &le) {
			t.Errorf("Listen(%q): %v, want a *ListenError wrapping ErrNotLoopback", addr, err)
		}
		// The message names what is accepted, and no flag that does not exist.
		if !strings.Contains(err.Error(), "unix:/path") || strings.Contains(err.Error(), "--") {
			t.Errorf("Listen(%q): error %q should name the accepted addresses and no flag", addr, err)
		}
	}
	// IPv4-mapped loopback is loopback.
	if l, err := Listen("[::ffff:127.0.0.1]:0"); errors.Is(err, ErrNotLoopback) {
		t.Errorf("::ffff:127.0.0.1 refused: %v", err)
	} else if err == nil {
		l.Close()
	}
	for _, addr := range []string{"127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "127.0.0.1:-1", "unix:"} {
		if l, err := Listen(addr); err == nil {
			l.Close()
			t.Errorf("Listen(%q) succeeded", addr)
		}
	}
	// Explicitly allowed.
	l, err := ListenConfig{AllowNonLoopback: true}.Listen("0.0.0.0:0")
	if err != nil {
		t.Fatalf("AllowNonLoopback: %v", err)
	}
	l.Close()
}

// unixClient returns an HTTP client that dials the socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}, Timeout: 10 * time.Second}
}

func TestListenUnix(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket file: %v %v", fi.Mode(), err)
	}
	s := New(newFakeBackend(), Options{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	defer func() {
		s.Close()
		<-done
	}()

	// Any Host header is fine on a unix socket (no browser can reach it).
	req, _ := http.NewRequest("GET", "http://anything.example/healthz", nil)
	resp, err := unixClient(sock).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("over the socket: %d %q", resp.StatusCode, body)
	}

	// A live socket is not taken over.
	if l2, err := Listen("unix:" + sock); err == nil {
		l2.Close()
		t.Fatal("second Listen on a live socket succeeded")
	}
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("the live socket was removed: %v", err)
	}
}

func TestListenUnixStale(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "stale.sock")
	old, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close() // leaves the file, as a crashed process would
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	l, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	l.Close()
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file left after Close: %v", err)
	}
}

func TestListenUnixRefusesNonSocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "data")
	if err := os.WriteFile(file, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := Listen("unix:" + file); err == nil {
		l.Close()
		t.Fatal("Listen over a regular file succeeded")
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "precious" {
		t.Fatalf("regular file damaged: %q %v", b, err)
	}
	if l, err := Listen("unix:" + dir); err == nil {
		l.Close()
		t.Fatal("Listen over a directory succeeded")
	}
	if l, err := Listen("unix:@trowfs-abstract"); err == nil {
		l.Close()
		t.Fatal("abstract socket accepted")
	}
}
