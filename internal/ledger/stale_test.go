package ledger

import (
	"fmt"
	"slices"
	"testing"

	"github.com/trowfs/trowfs/hashtree"
)

// Each test here pins a case where the keeper must not trust a tree entry, or a ledger name, that
// the data directory has already left behind (deleted or changed behind the mount, dropped from
// the tree by a repair, an inode number reused), plus the writers' index Drain asks.

// stale is a keeper over a data directory that a test changes behind the keeper's back.
type stale struct {
	t   *testing.T
	k   *Keeper
	out *recSink
	fs  map[string]hashtree.Meta // what lstat finds
	ts  int64
}

func newStale(t *testing.T) *stale {
	s := &stale{t: t, out: &recSink{mismatch: map[string]bool{}}, fs: map[string]hashtree.Meta{}}
	s.k = NewKeeper(hashtree.New(), Rules{}, s.out, func() int64 { s.ts++; return s.ts },
		func(rel string) (hashtree.Meta, bool) { m, ok := s.fs[rel]; return m, ok })
	return s
}

// settled puts a verified file at rel, as a finished hash leaves it.
func (s *stale) settled(rel string, m hashtree.Meta, content string) {
	s.fs[rel] = m
	s.k.Put(rel, hashtree.Entry{Kind: hashtree.KindFile, Digest: sum(content), Status: hashtree.StatusVerified, Meta: m})
}

func (s *stale) wantNames(ino uint64, want ...string) {
	s.t.Helper()
	if got := s.k.Names(ino); !slices.Equal(got, want) {
		s.t.Fatalf("names of inode %d = %q, want %q", ino, got, want)
	}
}

// A blob deleted behind the mount frees its inode number; the filesystem hands that number to
// the next upload, which the registry then renames onto the blob's name. The tree still holds
// the deleted blob there with the same inode number, but the rename is a real one: the upload's
// name must go and the blob's name must become the pending upload. Taking the two entries for
// two names of one file (rename(2) between hard links does nothing) left a phantom upload in the
// tree, the deleted blob's digest at the blob's name, and a hash that found no name to read.
func TestRenameOntoAStaleEntryWithAReusedInodeNumberMoves(t *testing.T) {
	s := newStale(t)
	s.settled("blobs/x", hashtree.Meta{Ino: 5, Size: 3, Mtime: 1, Ctime: 1}, "old")
	delete(s.fs, "blobs/x") // rm behind the mount: inode 5 is free

	up := hashtree.Meta{Ino: 5, Size: 0, Mtime: 10, Ctime: 10}
	s.fs["uploads/u"] = up
	s.k.OpenWrite("uploads/u", up, true)
	up.Size, up.Mtime, up.Ctime = 3, 11, 11
	s.fs["uploads/u"] = up
	s.k.CloseWrite(5)

	delete(s.fs, "uploads/u")
	s.fs["blobs/x"] = up
	s.k.Rename("uploads/u", "blobs/x", false)

	if _, ok := s.k.Tree().Get("uploads/u"); ok {
		t.Fatal("the upload's old name is still in the tree after it was renamed away")
	}
	e, ok := s.k.Tree().Get("blobs/x")
	if !ok || e.Status != hashtree.StatusPending || e.Meta != up {
		t.Fatalf("blobs/x = %+v %v, want the pending upload %+v", e, ok, up)
	}
	s.wantNames(5, "blobs/x")
}

// The same with the rename(2) really between two names of one file: both names stay.
func TestRenameBetweenLiveLinksStaysANoOp(t *testing.T) {
	s := newStale(t)
	m := hashtree.Meta{Ino: 6, Size: 3, Mtime: 1, Ctime: 1}
	s.settled("a", m, "abc")
	m.Ctime = 2
	s.fs["a"], s.fs["b"] = m, m
	s.k.Link("a", "b", m)
	s.k.Rename("a", "b", false)
	for _, p := range []string{"a", "b"} {
		if _, ok := s.k.Tree().Get(p); !ok {
			t.Fatalf("%s left the tree", p)
		}
	}
	s.wantNames(6, "a", "b")
}

// A hard-linked file stays in the ledger for its names. When both names are deleted behind the
// mount and the filesystem gives the freed inode number to a file created through the mount, the
// new file has one name, its own: the old names are not its names. Inheriting them made the hash
// of the new file record its digest at the deleted file's names (the tree still gave them that
// inode number), hiding their deletion from verification behind a wrong digest.
func TestCreatedFileDoesNotInheritTheNamesOfAReusedInodeNumber(t *testing.T) {
	s := newStale(t)
	m := hashtree.Meta{Ino: 7, Size: 3, Mtime: 1, Ctime: 1}
	s.settled("a", m, "old")
	m.Ctime = 2
	s.fs["a"], s.fs["c"] = m, m
	s.k.Link("a", "c", m)
	s.wantNames(7, "a", "c")
	delete(s.fs, "a") // rm of both names behind the mount: inode 7 is free
	delete(s.fs, "c")

	nm := hashtree.Meta{Ino: 7, Size: 0, Mtime: 10, Ctime: 10}
	s.fs["b"] = nm
	s.k.OpenWrite("b", nm, true)
	s.wantNames(7, "b")
}

// A created file whose inode number the ledger holds with names that still lead to it (the
// create raced an out-of-band link) keeps those names: only names that no longer lead to the
// inode are dropped.
func TestCreatedFileKeepsNamesThatStillLeadToIt(t *testing.T) {
	s := newStale(t)
	m := hashtree.Meta{Ino: 8, Size: 3, Mtime: 1, Ctime: 1}
	s.settled("a", m, "old")
	s.fs["c"] = m
	s.k.Link("a", "c", m)
	delete(s.fs, "a")
	s.fs["b"] = m
	s.k.OpenWrite("b", m, true)
	s.wantNames(8, "b", "c")
}

// The tracker repairs the tree from DATA (resyncLocked) without the keeper, so the tree can lack
// a directory under which the ledger still has files in flight. A rename of that directory
// through the mount did happen: the ledger must move the names with it, or the rescan of the
// new name gives each file a second name, the old one, that the ledger then keeps for ever (two
// names: never forgotten after its hash).
func TestRenameOfADirectoryTheTreeLostStillMovesTheLedgersNames(t *testing.T) {
	s := newStale(t)
	m := hashtree.Meta{Ino: 9, Size: 0, Mtime: 1, Ctime: 1}
	s.fs["d/f"] = m
	s.k.OpenWrite("d/f", m, true)
	s.k.CloseWrite(9)
	if err := s.k.Tree().Remove("d", 2); err != nil { // a repair that dropped d from the tree
		t.Fatal(err)
	}
	delete(s.fs, "d/f")
	s.fs["e/f"] = m
	s.k.Rename("d", "e", false)
	s.k.Rehash("e/f", m, false) // what the tracker's rescan of e does for its file
	s.wantNames(9, "e/f")
	if got := s.k.Book().Names(9); !slices.Equal(got, []string{"e/f"}) {
		t.Fatalf("the ledger names inode 9 %q, want only e/f", got)
	}
	s.k.Book().Settle(9)
	if n := s.k.Book().Tracked(); n != 0 {
		t.Fatalf("the ledger still holds %d files after the hash settled", n)
	}
}

// EachWriter visits exactly the files with writers: opened, closed, settled with writers open
// (the tracker's AbandonWriters), and among files the ledger holds only for their names.
func TestEachWriterVisitsExactlyTheFilesWithWriters(t *testing.T) {
	l := New()
	writers := func(want ...uint64) {
		t.Helper()
		var got []uint64
		l.EachWriter(func(f *File) {
			if f.Writers == 0 {
				t.Errorf("file %d without writers visited", f.Ino)
			}
			got = append(got, f.Ino)
		})
		slices.Sort(got)
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("writers %v, want %v", got, want)
		}
	}
	for i := uint64(10); i < 20; i++ {
		l.Link(fmt.Sprint("a", i), fmt.Sprint("b", i), i) // held for their names only
	}
	writers()
	l.Bind("f1", 1)
	l.OpenWrite(1, true)
	l.OpenWrite(1, false)
	l.OpenWrite(12, false)
	l.Bind("f2", 2)
	l.OpenWrite(2, true)
	writers(1, 2, 12)
	l.CloseWrite(1)
	writers(1, 2, 12)
	l.CloseWrite(1)
	l.CloseWrite(12)
	writers(2)
	l.Settle(2) // abandoned with its writer open
	writers()
	l.CloseWrite(2) // the late close of the abandoned writer
	writers()
}

// Drain's question, with 10,000 hard-linked files held for their names and one writer open.
// Measured here: Each about 147,000 ns/op, EachWriter about 110 ns/op.
func BenchmarkWritersAmongHeldLinks(b *testing.B) {
	l := New()
	for i := uint64(1); i <= 10_000; i++ {
		l.Link(fmt.Sprintf("d/%d/a", i), fmt.Sprintf("d/%d/b", i), i)
	}
	l.Bind("u", 20_000)
	l.OpenWrite(20_000, true)
	for _, bc := range []struct {
		name string
		each func(func(*File))
	}{{"Each", l.Each}, {"EachWriter", l.EachWriter}} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				n := 0
				bc.each(func(f *File) {
					if f.Writers > 0 {
						n++
					}
				})
				if n != 1 {
					b.Fatal(n)
				}
			}
		})
	}
}

// An exchange with a name the tree does not have (made behind the mount) fails in the tree, but
// it happened in DATA: the ledger's names must swap all the same, or the rescan of the two names
// gives each file under them a second, stale name, kept for ever, at which its hash is recorded
// while the tree still has the stale entry.
func TestExchangeTheTreeRefusedStillSwapsTheLedgersNames(t *testing.T) {
	s := newStale(t)
	m := hashtree.Meta{Ino: 9, Size: 0, Mtime: 1, Ctime: 1}
	s.fs["d/f"] = m
	s.k.OpenWrite("d/f", m, true)
	s.k.CloseWrite(9)
	behind := hashtree.Meta{Ino: 10, Size: 1, Mtime: 1, Ctime: 1}
	s.fs["e/g"] = behind // mkdir e and its file behind the mount: not in the tree

	delete(s.fs, "d/f")
	delete(s.fs, "e/g")
	s.fs["e/f"], s.fs["d/g"] = m, behind
	s.k.Rename("d", "e", true)
	if len(s.out.rescans) == 0 {
		t.Fatal("the tree took an exchange with a name it does not have")
	}
	s.k.Rehash("e/f", m, false) // what the tracker's rescans of d and e do for their files
	s.k.Rehash("d/g", behind, false)
	if got := s.k.Book().Names(9); !slices.Equal(got, []string{"e/f"}) {
		t.Fatalf("the ledger names inode 9 %q, want only e/f", got)
	}
	s.wantNames(10, "d/g")
}

// An exchange of a file with a directory moves the file's name and the names of everything in
// flight or hard-linked under the directory, both ways.
func TestExchangeOfAFileWithADirectoryMovesEveryName(t *testing.T) {
	l := New()
	l.Bind("f", 1)
	l.OpenWrite(1, true)
	l.Bind("d/g", 2)
	l.OpenWrite(2, true)
	l.Link("d/h", "d/i", 3)
	l.Exchange("f", "d")
	names(t, l, 1, "d")
	names(t, l, 2, "f/g")
	names(t, l, 3, "f/h", "f/i")
	l.Exchange("d", "f")
	names(t, l, 1, "f")
	names(t, l, 2, "d/g")
	names(t, l, 3, "d/h", "d/i")
	l.Exchange("d", "x/y") // with a name the ledger does not know
	names(t, l, 2, "x/y/g")
	l.Unbind("x/y/h")
	names(t, l, 3)
	l.Settle(1)
	l.Settle(2)
	if l.Tracked() != 0 || l.nodes() != 0 {
		t.Fatalf("left %d files, %d nodes", l.Tracked(), l.nodes())
	}
}
