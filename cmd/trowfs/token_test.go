package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A FIFO given as --api-token-file is refused at once (exit 2): opening it must not wait for a
// writer that never comes, which would leave the mount hanging before it starts.
func TestTokenFileFIFORefusedWithoutBlocking(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tok")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := readTokenFile(p); done <- err }()
	select {
	case err := <-done:
		if err == nil || exitFor(err) != ExitUsage || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("FIFO token file: %v (exit %d), want exit 2 saying not a regular file", err, exitFor(err))
		}
	case <-time.After(5 * time.Second):
		// Unblock the reader so the test process can end.
		if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		<-done
		t.Fatal("readTokenFile blocked on a FIFO")
	}
}
