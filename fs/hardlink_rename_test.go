package fs_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/fs/fstest"
)

// rename(2) from one name of a file to another name of the same file does nothing (POSIX): both
// names stay. The tree must keep both too, or the name it dropped turns up as drift and the
// registry's view (.state, the registry report) loses a file that is there.
func TestRenameBetweenTwoLinksOfOneFileKeepsBoth(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	a, b := filepath.Join(e.Mnt, "a"), filepath.Join(e.Mnt, "b")
	if err := os.WriteFile(a, []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(a, b); err != nil {
		t.Fatal(err)
	}
	e.Settle()
	if err := unix.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{a, b} {
		if _, err := os.Lstat(p); err != nil {
			t.Fatalf("after the rename: %v", err)
		}
	}
	e.AssertMatchesRescan()
	for _, f := range quickVerifyFindings(t, e) {
		t.Errorf("after the rename: %+v", f)
	}
}
