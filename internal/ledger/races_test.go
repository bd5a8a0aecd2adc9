package ledger

import (
	"fmt"
	"slices"
	"testing"
)

// The races below each broke the path-keyed tables the tracker kept before the ledger; an earlier
// commit fixed each there. Here each is a plain sequence of events in the order the tracker
// reports them, with what the hash worker would see at each step.

func names(t *testing.T, l *Ledger, ino uint64, want ...string) {
	t.Helper()
	if got := l.Names(ino); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("names of %d = %q, want %q", ino, got, want)
	}
}

func current(t *testing.T, l *Ledger, j Job, want bool) {
	t.Helper()
	if _, ok := l.Current(j); ok != want {
		t.Fatalf("Current(%+v) = %v, want %v", j, ok, want)
	}
}

// A registry renames an upload into place while its hash is running: the hash stays current (the
// content did not change) and the worker, which opened the old name, finds the new one.
func TestRenameDuringHashingKeepsTheJobAndMovesTheName(t *testing.T) {
	l := New()
	l.Bind("uploads/u1/data", 7)
	l.OpenWrite(7, true)
	j, ok := l.CloseWrite(7)
	if !ok {
		t.Fatal("the last close queued no hash")
	}
	before := l.Names(7)
	l.Rename("uploads/u1/data", "blobs/sha256/ab/abcd/data")
	current(t, l, j, true)
	names(t, l, 7, "blobs/sha256/ab/abcd/data")
	if slices.Equal(before, l.Names(7)) {
		t.Fatal("the worker cannot tell that the names changed")
	}
	l.Settle(7)
	if l.Tracked() != 0 || l.nodes() != 0 {
		t.Fatalf("a settled file with one name is still held: %d files, %d nodes", l.Tracked(), l.nodes())
	}
}

// Renaming a directory moves the names of every tracked file under it, at any depth.
func TestRenameOfADirectoryMovesTheNamesUnderIt(t *testing.T) {
	l := New()
	for i := uint64(1); i <= 100; i++ {
		l.Bind(fmt.Sprintf("repo/_uploads/%d/data", i), i)
		l.OpenWrite(i, true)
	}
	l.Rename("repo", "renamed")
	for i := uint64(1); i <= 100; i++ {
		names(t, l, i, fmt.Sprintf("renamed/_uploads/%d/data", i))
	}
	if _, ok := l.Ino("repo/_uploads/1/data"); ok {
		t.Fatal("the old name still leads to a file")
	}
}

// One name of a hard-linked file is unlinked while a writer has it open: the writer still counts,
// the other name stays, and the last close hashes the file under the name that is left.
func TestUnlinkOfOneNameWithAWriterOpenKeepsTheOther(t *testing.T) {
	l := New()
	l.Link("a", "b", 5)
	l.OpenWrite(5, false)
	l.Unbind("a")
	names(t, l, 5, "b")
	j, ok := l.CloseWrite(5)
	if !ok {
		t.Fatal("the last close queued no hash")
	}
	current(t, l, j, true)
	names(t, l, 5, "b")
	l.Settle(5)
	if l.Tracked() != 0 {
		t.Fatal("a settled file with one name left is still held")
	}
}

// RENAME_EXCHANGE of two files in flight swaps their names, and both jobs stay current.
func TestExchangeSwapsTheNamesOfTwoFilesInFlight(t *testing.T) {
	l := New()
	l.Bind("x", 1)
	l.Bind("d/y", 2)
	l.OpenWrite(1, true)
	l.OpenWrite(2, true)
	j1, _ := l.CloseWrite(1)
	j2, _ := l.CloseWrite(2)
	l.Exchange("x", "d/y")
	names(t, l, 1, "d/y")
	names(t, l, 2, "x")
	current(t, l, j1, true)
	current(t, l, j2, true)
}

// A fresh file is renamed over a file that a writer still has open: the open file loses its only
// name but stays in flight for its writer; its close queues a hash that finds no name (nothing to
// record), while the new file owns the name.
func TestRenameOverAnOpenFileLeavesItNameless(t *testing.T) {
	l := New()
	l.Bind("blobs/T", 1)
	l.OpenWrite(1, false)
	l.Bind("uploads/tmp", 2)
	l.OpenWrite(2, true)
	j2, _ := l.CloseWrite(2)
	if !l.Rename("uploads/tmp", "blobs/T") {
		t.Fatal("the rename was taken for a no-op")
	}
	names(t, l, 1)
	names(t, l, 2, "blobs/T")
	if f := l.File(1); f == nil || f.Writers != 1 || !f.InFlight {
		t.Fatalf("the replaced file lost its writer: %+v", f)
	}
	j1, ok := l.CloseWrite(1)
	if !ok {
		t.Fatal("the replaced file's last close queued no hash")
	}
	current(t, l, j1, true)
	current(t, l, j2, true)
	l.Settle(1)
	if l.File(1) != nil {
		t.Fatal("the nameless settled file is still held")
	}
	names(t, l, 2, "blobs/T")
}

// A deleted file's inode number is given to a new file before the old file's hash ran: the old
// job must not pass for the new file's (generations are never reused).
func TestReusedInodeNumberDoesNotRevivePendingJob(t *testing.T) {
	l := New()
	l.Bind("a", 9)
	l.OpenWrite(9, true)
	old, _ := l.CloseWrite(9)
	l.Unbind("a")
	l.Bind("b", 9)
	l.OpenWrite(9, true)
	current(t, l, old, false)
	j, _ := l.CloseWrite(9)
	current(t, l, old, false)
	current(t, l, j, true)
	names(t, l, 9, "b")
}

// rename(2) between two names of one file does nothing, and the ledger says so.
func TestRenameBetweenHardLinksIsANoOp(t *testing.T) {
	l := New()
	l.Link("a", "b", 3)
	if l.Rename("a", "b") {
		t.Fatal("rename between two names of one file reported as a move")
	}
	names(t, l, 3, "a", "b")
}

// A truncate by path or a new writer while a hash runs makes that hash stale; only the newest
// job is current.
func TestChangeDuringHashingMakesTheJobStale(t *testing.T) {
	l := New()
	l.Bind("f", 4)
	l.OpenWrite(4, true)
	j1, _ := l.CloseWrite(4)
	_, j2, ok := l.Changed(4)
	if !ok {
		t.Fatal("a change without writers queued no hash")
	}
	current(t, l, j1, false)
	current(t, l, j2, true)
	l.OpenWrite(4, false)
	current(t, l, j2, false)
	if _, ok := l.Requeue(4); ok {
		t.Fatal("a file with a writer was requeued")
	}
	j3, _ := l.CloseWrite(4)
	current(t, l, j3, true)
	if r, ok := l.Requeue(4); !ok || r != j3 {
		t.Fatalf("Requeue = %+v %v, want %+v", r, ok, j3)
	}
}

// Rename of a directory costs the depth of the names, not the number of files under it: the same
// trie node moves. (The tables before rewrote every path under it.)
func BenchmarkRenameDirectoryWith100kFilesInFlight(b *testing.B) {
	l := New()
	for i := uint64(1); i <= 100_000; i++ {
		l.Bind(fmt.Sprintf("d/%d/%d", i%100, i), i)
		l.OpenWrite(i, true)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			l.Rename("d", "e")
		} else {
			l.Rename("e", "d")
		}
	}
}
