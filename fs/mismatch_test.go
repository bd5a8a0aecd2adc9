package fs_test

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/trowfs/trowfs/fs/fstest"
)

// refuseSet is a Refuser over a set the test changes.
type refuseSet struct {
	mu  sync.Mutex // guards bad
	bad map[string]bool
}

func (r *refuseSet) refuse(rel string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bad[rel]
}

func (r *refuseSet) set(rel string, bad bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bad[rel] = bad
}

func TestRefuseFailsReadsWithEIO(t *testing.T) {
	for _, mode := range []string{"passthrough", "daemon"} {
		t.Run(mode, func(t *testing.T) {
			rs := &refuseSet{bad: map[string]bool{}}
			e := fstest.Mount(t, fstest.Options{WriteMode: mode, Refuse: rs.refuse})
			p := filepath.Join(e.Mnt, "blobs", "b1")
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("content"), 0o644); err != nil {
				t.Fatal(err)
			}
			rs.set("blobs/b1", true)
			if _, err := os.ReadFile(p); !errors.Is(err, syscall.EIO) {
				t.Fatalf("read of a refused file: %v, want EIO", err)
			}
			if _, err := os.OpenFile(p, os.O_RDWR, 0); !errors.Is(err, syscall.EIO) {
				t.Fatalf("O_RDWR open of a refused file: %v, want EIO", err)
			}
			f, err := os.OpenFile(p, os.O_WRONLY, 0) // a registry rewriting the blob may
			if err != nil {
				t.Fatalf("write-only open of a refused file: %v", err)
			}
			f.Close()
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("stat of a refused file: %v (only opens that read are refused)", err)
			}
			rs.set("blobs/b1", false)
			if b, err := os.ReadFile(p); err != nil || string(b) != "content" {
				t.Fatalf("read once no longer refused: %q, %v", b, err)
			}
			e.AssertMatchesRescan()
		})
	}
}

func TestInvalidateShowsAFileReplacedBehindTheMount(t *testing.T) {
	for _, mode := range []string{"passthrough", "daemon"} {
		t.Run(mode, func(t *testing.T) {
			e := fstest.Mount(t, fstest.Options{WriteMode: mode})
			p := filepath.Join(e.Mnt, "blobs", "b1")
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("old content"), 0o644); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(p); err != nil || string(b) != "old content" {
				t.Fatalf("read: %q, %v", b, err)
			}
			// Replace it in DATA as a heal does: a new file renamed over the name.
			tmp := filepath.Join(e.Data, "copy.tmp")
			if err := os.WriteFile(tmp, []byte("new content"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(e.Data, "blobs", "b1")); err != nil {
				t.Fatal(err)
			}
			var backing, seen syscall.Stat_t
			if err := syscall.Stat(filepath.Join(e.Data, "blobs", "b1"), &backing); err != nil {
				t.Fatal(err)
			}
			e.Server.Invalidate("blobs/b1")
			if err := syscall.Stat(p, &seen); err != nil {
				t.Fatal(err)
			}
			if seen.Ino != backing.Ino {
				t.Fatalf("the mount still shows inode %d after Invalidate; the file is now %d", seen.Ino, backing.Ino)
			}
			if b, err := os.ReadFile(p); err != nil || string(b) != "new content" {
				t.Fatalf("read after Invalidate: %q, %v", b, err)
			}
			e.Server.Invalidate("no/such/file") // nothing known there: no effect, no panic
			e.Server.Invalidate("blobs/none")
		})
	}
}
