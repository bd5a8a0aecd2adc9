package fs_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	trowfs "github.com/trowfs/trowfs/fs"
	"github.com/trowfs/trowfs/fs/fstest"
	"github.com/trowfs/trowfs/hashtree"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func writeModes(t *testing.T, fn func(t *testing.T, mode string)) {
	for _, m := range []string{trowfs.WritePassthrough, trowfs.WriteDaemon} {
		t.Run(m, func(t *testing.T) { fn(t, m) })
	}
}

// Every write through the mount must change the tree, whatever the write mode.
func TestWritesReachTree(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode})
		if mode == trowfs.WritePassthrough && !e.Server.Passthrough() {
			t.Log("kernel did not accept FUSE passthrough; writes go through the daemon")
		}
		content := bytes.Repeat([]byte("trowfs"), 100000)
		p := filepath.Join(e.Mnt, "a.bin")
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		e.Settle()
		ent, ok := e.Tracker.Entry("a.bin")
		if !ok || ent.Digest.String() != sha(content) || ent.Status != hashtree.StatusVerified {
			t.Fatalf("after write: entry %+v ok=%v, want digest %s verified", ent, ok, sha(content))
		}
		// Overwrite in the middle, append, truncate: every one must reach the tree.
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("XYZ"), 1000); err != nil {
			t.Fatal(err)
		}
		f.Close()
		copy(content[1000:], "XYZ")
		e.Settle()
		if ent, _ := e.Tracker.Entry("a.bin"); ent.Digest.String() != sha(content) {
			t.Fatalf("overwrite not seen: %s want %s", ent.Digest, sha(content))
		}
		af, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		af.Write([]byte("tail"))
		af.Close()
		content = append(content, "tail"...)
		if err := os.Truncate(p, 5000); err != nil {
			t.Fatal(err)
		}
		content = content[:5000]
		e.Settle()
		if ent, _ := e.Tracker.Entry("a.bin"); ent.Digest.String() != sha(content) || ent.Meta.Size != 5000 {
			t.Fatalf("append+truncate not seen: %s size %d want %s", ent.Digest, ent.Meta.Size, sha(content))
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("read back through the mount differs (err %v)", err)
		}
		e.AssertMatchesRescan()
	})
}

// A file stays pending while a writer holds it open.
func TestPendingWhileOpen(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	f, err := os.Create(filepath.Join(e.Mnt, "open.bin"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("partial"))
	if ent, _ := e.Tracker.Entry("open.bin"); ent.Status != hashtree.StatusPending {
		t.Fatalf("status while open = %s, want pending", ent.Status)
	}
	if st := e.ReadState(""); st["status"] != "pending" {
		t.Fatalf("root status while a writer is open = %v, want pending", st["status"])
	}
	f.Close()
	e.AssertMatchesRescan()
}

// A passthrough read returns the bytes of the backing file.
func TestPassthroughRead(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	content := make([]byte, 3<<20+17)
	for i := range content {
		content[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(e.Data, "r.bin"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(e.Mnt, "r.bin"))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read through the mount: err %v, equal %v", err, bytes.Equal(got, content))
	}
	if !e.Server.Passthrough() {
		t.Log("note: kernel passthrough not active on this machine")
	}
}

func TestStateFile(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	if err := os.MkdirAll(filepath.Join(e.Mnt, "blobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.Mnt, "blobs", "x"), []byte("x"), 0o644)
	e.Settle()
	st := e.ReadState("blobs")
	for _, k := range []string{"path", "digest", "status", "files", "dirs", "bytes", "statuses", "changed_at", "verified_at"} {
		if _, ok := st[k]; !ok {
			t.Errorf(".state lacks key %q: %v", k, st)
		}
	}
	if st["files"].(float64) != 1 || st["path"] != "/blobs" {
		t.Errorf("unexpected .state: %v", st)
	}
	for _, dir := range []string{"", "blobs"} {
		ents, err := os.ReadDir(filepath.Join(e.Mnt, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ents {
			if d.Name() == ".state" || d.Name() == ".trowfs" {
				t.Errorf("readdir of %q lists %s", dir, d.Name())
			}
		}
	}
	sp := filepath.Join(e.Mnt, "blobs", ".state")
	if _, err := os.OpenFile(sp, os.O_WRONLY, 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("open .state for writing: %v, want EROFS", err)
	}
	if err := os.Remove(sp); !errors.Is(err, syscall.EPERM) {
		t.Errorf("unlink .state: %v, want EPERM", err)
	}
	if err := os.Rename(sp, filepath.Join(e.Mnt, "blobs", "y")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("rename .state: %v, want EPERM", err)
	}
	if _, err := os.Stat(filepath.Join(e.Mnt, ".trowfs")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".trowfs visible through the mount: %v", err)
	}
	buf := make([]byte, 100)
	n, err := unix.Getxattr(filepath.Join(e.Mnt, "blobs", "x"), trowfs.XattrDigest, buf)
	if err != nil || string(buf[:n]) != sha([]byte("x")) {
		t.Errorf("xattr digest = %q, %v", buf[:n], err)
	}
	e.AssertMatchesRescan()
}

// Renames over existing targets, across directories and of whole directories; links; unlinks of
// open files.
func TestRenamesAndLinks(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{Exclude: []string{"uploads/**"}})
	m := func(p string) string { return filepath.Join(e.Mnt, p) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(m("uploads"), 0o755))
	must(os.MkdirAll(m("blobs"), 0o755))
	must(os.MkdirAll(m("d1/sub"), 0o755))
	data := []byte("layer content")
	must(os.WriteFile(m("uploads/u1"), data, 0o644))
	must(os.WriteFile(m("blobs/old"), []byte("old"), 0o644))
	must(os.Rename(m("uploads/u1"), m("blobs/old"))) // over an existing target, out of an excluded area
	must(os.WriteFile(m("d1/sub/f"), []byte("f"), 0o644))
	must(os.Rename(m("d1"), m("d2")))
	must(os.Link(m("blobs/old"), m("d2/hard")))
	f, err := os.OpenFile(m("d2/sub/f"), os.O_RDWR, 0)
	must(err)
	must(os.Remove(m("d2/sub/f")))
	f.Write([]byte("written after unlink"))
	f.Close()
	must(os.Symlink("../blobs/old", m("d2/link")))
	e.AssertMatchesRescan()
	if ent, _ := e.Tracker.Entry("blobs/old"); ent.Digest.String() != sha(data) {
		t.Fatalf("renamed-in upload not hashed: %+v", ent)
	}
	names := []string{}
	ents, _ := os.ReadDir(m("d2"))
	for _, d := range ents {
		names = append(names, d.Name())
	}
	if !slices.Equal(names, []string{"hard", "link", "sub"}) {
		t.Fatalf("d2 lists %v", names)
	}
}

// With ListState, every directory lists its .state once, after the backing entries, and a second
// listing (rewind) lists it again.
func TestListState(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{ListState: true})
	for i := 0; i < 300; i++ { // enough entries for several READDIR requests
		os.WriteFile(filepath.Join(e.Mnt, fmt.Sprintf("f%03d", i)), nil, 0o644)
	}
	for pass := 0; pass < 2; pass++ {
		ents, err := os.ReadDir(e.Mnt)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range ents {
			if d.Name() == ".state" {
				n++
			}
			if d.Name() == ".trowfs" {
				t.Fatal(".trowfs listed")
			}
		}
		if n != 1 || len(ents) != 301 {
			t.Fatalf("pass %d: %d entries, .state listed %d times; want 301 and once", pass, len(ents), n)
		}
	}
	if _, err := os.ReadFile(filepath.Join(e.Mnt, ".state")); err != nil {
		t.Fatal(err)
	}
}
