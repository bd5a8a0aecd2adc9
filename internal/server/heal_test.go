package server_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trowfs/trowfs/internal/server"
)

func distBlob(content string) (string, digest.Digest) {
	d := digest.FromString(content)
	return filepath.Join("docker/registry/v2/blobs/sha256", d.Encoded()[:2], d.Encoded(), "data"), d
}

func writeThrough(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// --on-mismatch=eio: a blob written through the mount with content that does not match its name
// cannot be opened for reading (EIO) until it is rewritten right; the refusal survives a remount
// (it starts from the snapshot's tree); the default serves the bytes.
func TestOnMismatchEIORefusesKnownBadBlobs(t *testing.T) {
	rel, _ := distBlob("the real layer")
	data := filepath.Join(t.TempDir(), "data")
	os.Mkdir(data, 0o755)
	s := start(t, server.Config{Data: data, Layout: "distribution", OnMismatch: server.OnMismatchEIO})
	p := filepath.Join(s.Mountpoint(), rel)
	writeThrough(t, p, "the fake layer")
	if !s.Settle(10 * time.Second) {
		t.Fatal("did not settle")
	}
	if _, err := os.ReadFile(p); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a mismatched blob under eio: %v, want EIO", err)
	}
	other, _ := distBlob("a good one")
	writeThrough(t, filepath.Join(s.Mountpoint(), other), "a good one")
	if !s.Settle(10 * time.Second) {
		t.Fatal("did not settle")
	}
	if b, err := os.ReadFile(filepath.Join(s.Mountpoint(), other)); err != nil || string(b) != "a good one" {
		t.Fatalf("a good blob: %q, %v", b, err)
	}
	// Rewritten right (write-only opens are let through): readable again.
	writeThrough(t, p, "the real layer")
	if !s.Settle(10 * time.Second) {
		t.Fatal("did not settle")
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "the real layer" {
		t.Fatalf("read after the blob was rewritten right: %q, %v", b, err)
	}
	// Bad again, then remounted: refused from the start. Its mtime is set back so the next
	// mount trusts the snapshot's status instead of rehashing it (no event then: the refusal
	// must come from the loaded tree).
	writeThrough(t, p, "the fake layer")
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, past, past); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	s2 := start(t, server.Config{Data: data, Layout: "distribution", OnMismatch: server.OnMismatchEIO})
	if _, err := os.ReadFile(filepath.Join(s2.Mountpoint(), rel)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a mismatched blob after a remount under eio: %v, want EIO", err)
	}
	if err := s2.Stop(); err != nil {
		t.Fatal(err)
	}
	s3 := start(t, server.Config{Data: data, Layout: "distribution"}) // serve, the default
	if b, err := os.ReadFile(filepath.Join(s3.Mountpoint(), rel)); err != nil || string(b) != "the fake layer" {
		t.Fatalf("read of a mismatched blob under serve: %q, %v", b, err)
	}
}

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

func TestOnMismatchRejectsUnknownPolicy(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	_, err := server.Start(context.Background(), server.Config{Data: data, Mnt: filepath.Join(dir, "mnt"), OnMismatch: "ignore"})
	var ce *server.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("--on-mismatch=ignore: %v, want a ConfigError", err)
	}
}
