package fs_test

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/fs/fstest"
)

// A directory removed while held open has no name: its .state must not be the root's document
// (go-fuse gives an orphan the root's path "").
func TestStateOfRemovedDirectoryIsNotTheRoots(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	d := filepath.Join(e.Mnt, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.Mnt, "f"), []byte("root content"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir, err := os.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	held, err := os.Open(filepath.Join(d, ".state")) // keeps the .state dentry
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := os.Remove(d); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Openat(int(dir.Fd()), ".state", unix.O_RDONLY, 0)
	if errors.Is(err, unix.ENOENT) {
		return
	}
	if err != nil {
		t.Fatalf("openat .state of a removed directory: %v, want ENOENT", err)
	}
	f := os.NewFile(uintptr(fd), ".state")
	defer f.Close()
	b, _ := io.ReadAll(f)
	var doc map[string]any
	_ = json.Unmarshal(b, &doc)
	t.Errorf("the removed directory's .state opened (want ENOENT) and says path %v, files %v", doc["path"], doc["files"])
}
