package server_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/trowfs/trowfs/server"
)

// --on-mismatch=eio against a reader that tries other ways to the bad bytes: O_RDWR, a hard link
// and a rename to another blob path. And it never refuses a good file: after the bad blob is
// deleted and pushed again right, it reads.
func TestOnMismatchEIOHasNoSideDoor(t *testing.T) {
	rel, _ := distBlob("the real layer")
	linked, _ := distBlob("another layer")
	moved, _ := distBlob("a third layer")
	data := filepath.Join(t.TempDir(), "data")
	os.Mkdir(data, 0o755)
	s := start(t, server.Config{Data: data, Layout: "distribution", OnMismatch: server.OnMismatchEIO})
	mnt := s.Mountpoint()
	p := filepath.Join(mnt, rel)
	writeThrough(t, p, "the fake layer")
	settle := func() {
		t.Helper()
		if !s.Settle(10 * time.Second) {
			t.Fatal("did not settle")
		}
	}
	settle()
	refused := func(what, p string) {
		t.Helper()
		for _, flags := range []int{os.O_RDONLY, os.O_RDWR} {
			f, err := os.OpenFile(p, flags, 0)
			if err == nil {
				f.Close()
			}
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("%s: open(%#o) = %v, want EIO", what, flags, err)
			}
		}
	}
	refused("the bad blob", p)
	lp := filepath.Join(mnt, linked)
	if err := os.MkdirAll(filepath.Dir(lp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(p, lp); err != nil {
		t.Fatal(err)
	}
	settle()
	refused("a hard link to the bad blob at another blob path", lp)
	refused("the bad blob after a link to it", p)
	if err := os.Remove(lp); err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(mnt, moved)
	if err := os.MkdirAll(filepath.Dir(mp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p, mp); err != nil {
		t.Fatal(err)
	}
	settle()
	refused("the bad blob renamed to another blob path", mp)
	// Deleted, then pushed again right: served.
	if err := os.Remove(mp); err != nil {
		t.Fatal(err)
	}
	settle()
	writeThrough(t, p, "the real layer")
	settle()
	if b, err := os.ReadFile(p); err != nil || string(b) != "the real layer" {
		t.Fatalf("the blob pushed again right after a delete: %q, %v", b, err)
	}
}
