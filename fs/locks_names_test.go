package fs_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/fs/fstest"
)

// Locks are kept per kernel node (docs/state.md): with per-name nodes, locks taken through two
// names of one file do not exclude each other; through one name, and with one node per file, they
// do, as natively.
func TestLocksThroughTwoNamesOfOneFile(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode})
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		if err := os.WriteFile(m("a"), []byte("db"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(m("a"), m("b")); err != nil {
			t.Fatal(err)
		}
		open := func(p string) *os.File {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
		fa, fa2, fb := open(m("a")), open(m("a")), open(m("b"))
		if err := unix.FcntlFlock(fa.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			t.Fatal(err)
		}
		if err := unix.FcntlFlock(fa2.Fd(), unix.F_OFD_SETLK, &lk); !errors.Is(err, unix.EAGAIN) {
			t.Errorf("second OFD lock through the same name: %v, want EAGAIN", err)
		}
		err := unix.FcntlFlock(fb.Fd(), unix.F_OFD_SETLK, &lk)
		if e.Server.Passthrough() {
			if err != nil {
				t.Errorf("per-name nodes: lock through the other name = %v; docs/state.md says it does not exclude", err)
			}
		} else if !errors.Is(err, unix.EAGAIN) {
			t.Errorf("one node per file: lock through the other name = %v, want EAGAIN", err)
		}
	})
}
