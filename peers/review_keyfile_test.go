package peers

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReviewKeyFileRefusesWhatItCannotUse: a key file that is empty, padded with something after
// the key, or a FIFO nobody writes to gets a clear ConfigError at once (the CLI exits 2): a FIFO
// used to block the mount's start for ever in open(2), a 0-byte file said only "EOF", and anything
// after the first 1024 bytes was silently ignored.
func TestReviewKeyFileRefusesWhatItCannotUse(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(make([]byte, 32))
	fifo := filepath.Join(t.TempDir(), "peer.key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path, want string
	}{
		{"zero bytes", writeKey(t, "", 0o600), "empty"},
		{"trailing content past 1 KiB", writeKey(t, good+"\n"+strings.Repeat(" ", 1100)+"second line", 0o600), "larger than"},
		{"fifo", fifo, "not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, err := LoadKeyFile(c.path); done <- err }()
			select {
			case err := <-done:
				var ce *ConfigError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("got %v, want a ConfigError containing %q", err, c.want)
				}
			case <-time.After(3 * time.Second):
				// Unblock the open so the goroutine ends.
				if f, err := os.OpenFile(c.path, os.O_WRONLY, 0); err == nil {
					f.Close()
				}
				t.Fatal("LoadKeyFile still blocked after 3 s")
			}
		})
	}
}
