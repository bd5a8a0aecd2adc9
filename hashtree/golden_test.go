package hashtree

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// goldenTrees builds, deterministically, trees that exercise every kind of
// name the tree may store compactly or not: blob names that are their own
// digest ("sha256:<hex>" and bare "<hex>"), the same shapes with another
// digest, short and long names, symlinks, excluded files, nested and large
// directories, and removals, renames, exchanges and updates on top.
func goldenTrees(tb testing.TB) map[string]*Tree {
	tb.Helper()
	dig := func(i int, salt string) Digest {
		return SumBytes(binary.BigEndian.AppendUint64([]byte(salt), uint64(i)))
	}
	file := func(d Digest, i int, st Status) Entry {
		return Entry{Kind: KindFile, Digest: d, Status: st,
			Meta: Meta{Size: int64(i), Mtime: int64(i) * 1e9, Ctime: int64(i)*1e9 + 7, Ino: uint64(i) + 1<<40}, ChangedAt: int64(i) + 3, VerifiedAt: int64(i) * 2}
	}
	trees := map[string]*Tree{}

	// A Trow v0.7 blob store: names are "sha256:<hex of the content digest>".
	tr := New()
	must(tb, tr.Mkdir("blobs", 1))
	for i := 0; i < 3000; i++ {
		d := dig(i, "blob")
		must(tb, tr.Put("blobs/"+d.String(), file(d, i, StatusVerified)))
	}
	trees["blobs-3000"] = tr

	// Everything mixed, then changed.
	tr = New()
	must(tb, tr.MkdirAll("a/b/c", 2))
	must(tb, tr.MkdirAll("v3/blobs/sha256", 2))
	must(tb, tr.Mkdir("uploads", 2))
	for i := 0; i < 700; i++ {
		d := dig(i, "mixed")
		st := Status(i % NumStatus)
		switch i % 7 {
		case 0:
			must(tb, tr.Put("a/"+d.String(), file(d, i, st))) // its own digest
		case 1:
			must(tb, tr.Put("a/"+d.String(), file(dig(i, "other"), i, st))) // another digest
		case 2:
			must(tb, tr.Put("v3/blobs/sha256/"+hex.EncodeToString(d[:]), file(d, i, st))) // bare hex, own digest
		case 3:
			must(tb, tr.Put(fmt.Sprintf("a/b/f%d", i), file(d, i, st)))
		case 4:
			must(tb, tr.Put(fmt.Sprintf("a/b/c/%s-%d", strings.Repeat("long", 30), i), file(d, i, st)))
		case 5:
			must(tb, tr.Put(fmt.Sprintf("a/l%d", i), Entry{Kind: KindSymlink, Target: fmt.Sprintf("../t/%d", i), Meta: Meta{Mtime: -int64(i)}, ChangedAt: int64(i)}))
		case 6:
			must(tb, tr.Put(fmt.Sprintf("uploads/u%d", i), file(d, i, StatusExcluded)))
		}
	}
	for i := 0; i < 700; i += 11 {
		d := dig(i, "mixed")
		switch i % 7 {
		case 0:
			must(tb, tr.Update("a/"+d.String(), func(e *Entry) { e.Digest = dig(i, "changed"); e.Status = StatusPending }))
		case 1:
			must(tb, tr.Put("a/"+d.String(), file(d, i, StatusVerified))) // now its own digest
		case 2:
			must(tb, tr.Remove("v3/blobs/sha256/"+hex.EncodeToString(d[:]), int64(i)))
		case 3:
			must(tb, tr.Rename(fmt.Sprintf("a/b/f%d", i), "a/b/c/"+d.String(), int64(i)))
		case 4:
			must(tb, tr.Update(fmt.Sprintf("a/b/c/%s-%d", strings.Repeat("long", 30), i), func(e *Entry) { e.Status = StatusExcluded }))
		case 5:
			must(tb, tr.Put(fmt.Sprintf("a/l%d", i), file(d, i, StatusMismatch))) // a symlink becomes a file
		case 6:
			must(tb, tr.Put(fmt.Sprintf("uploads/u%d", i), Entry{Kind: KindSymlink, Target: "x"})) // a file becomes a symlink
		}
	}
	must(tb, tr.Exchange("a/b", "v3/blobs", 9))
	must(tb, tr.Rename("uploads", "v3/blobs/c/up", 10))
	trees["mixed"] = tr
	return trees
}

// The root digests and snapshot bytes of goldenTrees, recorded from the tree
// before its entries were made compact: a change of representation must not
// change a single digest or snapshot byte (the format is fixed by
// docs/tree-format.md).
var goldenWant = map[string][2]string{
	"blobs-3000": {"sha256:b4c1b7193c9dc470347be3fa086c831499aa2bd80927e9a21276d609d759b1a3", "52bfc8eb6d4b61d36d9e0d6907f648c212085391192c28a243a0d577517f8860"},
	"mixed":      {"sha256:6bfa34f0a6d5364385bc29fd31db46ac5e94dc689a4d9cd26a6d79a3c9e1a092", "5a0fa5949fba988192f6888c4168392648d352223720ebb762f604c8c4865ca1"},
}

func TestGoldenDigestsAndSnapshots(t *testing.T) {
	for name, tr := range goldenTrees(t) {
		checkInvariants(t, tr)
		snap := snapshotBytes(t, tr, map[string]string{"k": "v"})
		sum := sha256.Sum256(snap)
		got := [2]string{tr.Root().String(), hex.EncodeToString(sum[:])}
		if got != goldenWant[name] {
			t.Errorf("%s: root %s snapshot sha256 %s, want %s %s", name, got[0], got[1], goldenWant[name][0], goldenWant[name][1])
		}
		back, _, err := ReadSnapshot(bytes.NewReader(snap))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(snapshotBytes(t, back, map[string]string{"k": "v"}), snap) {
			t.Errorf("%s: a reloaded tree writes another snapshot", name)
		}
		sameTrees(t, tr, back)
	}
}
