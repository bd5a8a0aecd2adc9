package regtest

import (
	"path/filepath"
	"strconv"
	"testing"
)

// StartOlareg starts olareg serving dir (one OCI image layout per repository) on a free 127.0.0.1
// port, with the delete APIs enabled and its background garbage collection off (it would change the
// directory at a random time), and waits until /v2/ answers. It is stopped on t.Cleanup.
func StartOlareg(tb testing.TB, dir string) *Registry {
	tb.Helper()
	tools := Tools(tb)
	abs, err := filepath.Abs(dir)
	if err != nil {
		tb.Fatalf("regtest: olareg dir: %v", err)
	}
	p, addr := startServer(tb, "olareg", func(port int) ([]string, error) {
		return []string{tools.Olareg, "serve",
			"--addr", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", abs,
			"--api-delete", "--api-blob-delete", "--gc-frequency=-1s"}, nil
	})
	return &Registry{Addr: addr, Dir: abs, proc: p}
}
