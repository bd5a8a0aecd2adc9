package integration

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/trowfs/trowfs/integration/regtest"
	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// newMounter returns a regtest.Mounter backed by the real trowfs binary through trowfsbin.
func newMounter(t *testing.T) regtest.Mounter {
	t.Helper()
	trowfsbin.Require(t)
	return &binMounter{procs: map[string]*trowfsbin.Proc{}}
}

// binMounter runs `trowfs mount` per data directory with trowfsbin.
type binMounter struct {
	// mu guards procs.
	mu sync.Mutex
	// procs maps a mountpoint to the trowfs serving it.
	procs map[string]*trowfsbin.Proc
}

func (b *binMounter) Mount(tb testing.TB, data string, args ...string) string {
	tb.Helper()
	// The mountpoint's directory is made before Start registers its cleanup, so it is removed
	// after the unmount (cleanups run last-in first-out).
	mnt := filepath.Join(tb.TempDir(), "mnt")
	p := trowfsbin.Start(tb, data, mnt, args...)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.procs[p.Mnt] = p
	return p.Mnt
}

func (b *binMounter) Unmount(tb testing.TB, mnt string) {
	tb.Helper()
	b.mu.Lock()
	p := b.procs[mnt]
	delete(b.procs, mnt)
	b.mu.Unlock()
	if p == nil {
		tb.Fatalf("no trowfs mount on %s", mnt)
	}
	p.Stop(tb)
}

func (b *binMounter) Verify(tb testing.TB, data string) (int, []byte) {
	tb.Helper()
	r := trowfsbin.Run(tb, "verify", data, "--json", "--progress", "none")
	return r.Code, []byte(r.Stdout)
}
