package tracker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// A data directory whose files also have a name outside it (a hard-link backup such as cp -al or
// rsnapshot beside DATA) has every file at nlink 2 but one name inside. The load's scan found
// them as hard-linked, and the ledger held each of them, with a trie node per name, for as long as
// the file was not written again: memory for every file of the registry, and work for every
// walk over the ledger (Drain, AbandonWriters). Only a file with two names the mount can see has
// anything to keep.
func TestLoadKeepsOnlyFilesWithSeveralNamesInData(t *testing.T) {
	dir := t.TempDir()
	data, backup := filepath.Join(dir, "data"), filepath.Join(dir, "backup")
	if err := os.MkdirAll(backup, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := 0; i < n; i++ {
		p := filepath.Join(data, "blobs", fmt.Sprintf("b%d", i))
		write(t, p, fmt.Sprint("blob ", i))
		if err := os.Link(p, filepath.Join(backup, fmt.Sprintf("b%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(data, "x"), "linked inside")
	if err := os.Link(filepath.Join(data, "x"), filepath.Join(data, "y")); err != nil {
		t.Fatal(err)
	}
	// Files changed just before a snapshot are hashed again at the next load (racy): date them
	// an hour back so the second load trusts the snapshot whatever the machine's speed.
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{"x", "y"} {
		if err := os.Chtimes(filepath.Join(data, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		if err := os.Chtimes(filepath.Join(data, "blobs", fmt.Sprintf("b%d", i)), old, old); err != nil {
			t.Fatal(err)
		}
	}
	// The first mount hashes every file (each is in flight, then settled and forgotten); the
	// second loads its snapshot, finds the files unchanged and hashes none of them.
	first := newTracker(t, data)
	if _, err := first.Load(context.Background(), VerifyQuick); err != nil {
		t.Fatal(err)
	}
	if !first.Drain(10 * time.Second) {
		t.Fatal("did not settle")
	}
	if err := first.WriteSnapshot(true); err != nil {
		t.Fatal(err)
	}
	first.Close()
	tr := newTracker(t, data)
	defer tr.Close()
	if rep, err := tr.Load(context.Background(), VerifyQuick); err != nil || rep.Rehashing != 0 {
		t.Fatalf("second load: %+v, %v; want nothing to hash", rep, err)
	}
	if !tr.Drain(10 * time.Second) {
		t.Fatal("did not settle")
	}
	st, err := os.Stat(filepath.Join(data, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.FileNames(st.Sys().(*syscall.Stat_t).Ino); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("names of x = %q, want x and y", got)
	}
	tr.mu.Lock()
	tracked := tr.book.Tracked()
	tr.mu.Unlock()
	if tracked != 1 {
		t.Fatalf("the ledger holds %d files after the load, want 1 (only x/y has two names in DATA)", tracked)
	}
	assertEqualsRescan(t, tr)
}
