package tracker

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// An open for writing whose name was unlinked (or taken by another file) before the mount
// reported the open must not bring the name back, nor put anything at the root.
func TestOpenWriteOfUnlinkedNameRecordsNoEntry(t *testing.T) {
	data := t.TempDir()
	write(t, filepath.Join(data, "r"), "old")
	tr := newTracker(t, data)
	defer tr.Close()
	if _, err := tr.Load(context.Background(), VerifyQuick); err != nil {
		t.Fatal(err)
	}
	open := func(name string) int {
		fd, err := unix.Open(filepath.Join(data, name), unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	gone := open("r")
	if err := os.Remove(filepath.Join(data, "r")); err != nil {
		t.Fatal(err)
	}
	tr.Unlink("r")
	// The handler read the name before the unlink, or after it orphaned the node.
	tr.OpenWrite("r", gone, false).Close()
	tr.OpenWrite("", gone, false).Close()
	tr.Truncated("r")
	tr.Created("r")
	if !tr.Drain(5e9) {
		t.Fatal("did not settle")
	}
	if e, ok := tr.Entry("r"); ok {
		t.Errorf("unlinked r is back in the tree: %+v", e)
	}

	// r now names another file: the stale open must not describe it.
	write(t, filepath.Join(data, "r"), "new file")
	tr.Created("r")
	write(t, filepath.Join(data, "s"), "s")
	tr.Created("s")
	tr.OpenWrite("r", open("s"), false).Close()
	assertEqualsRescan(t, tr)
	for _, f := range tr.Findings("") {
		t.Errorf("finding: %+v", f)
	}
}
