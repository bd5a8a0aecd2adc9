package hashtree

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"unsafe"
)

// An entry and a HAMT node each fit the 96-byte size class: a million of
// the first and some 70,000 of the second live in a million-entry directory.
func TestEntryAndHAMTNodeSizes(t *testing.T) {
	if s := unsafe.Sizeof(node{}); s > 96 {
		t.Errorf("node is %d bytes, want at most 96", s)
	}
	if s := unsafe.Sizeof(hnode{}); s > 96 {
		t.Errorf("hnode is %d bytes, want at most 96", s)
	}
}

// A blob store of 200k files, built by Put, holds at most 200 bytes of heap
// per file (measured 176). Before entries were made compact (a 77-byte name buffer in every
// node, the name stored beside a digest that spells it) it held 282 bytes;
// now 96-byte nodes hold blob names as their digest, HAMT nodes keep no
// per-node counts, and the rest is the HAMT and the name index. (At 1M files, the bench row's size, the HAMT's
// leaves are fuller and the figure is lower: see TestMemoryPerEntry.)
func TestBlobStoreMemoryBound(t *testing.T) {
	const n, bound = 200_000, 200
	before := heapInUse()
	tr, paths := flatTree(t, n)
	var pathBytes uint64 // the test's own slice of paths is not the tree's
	for _, p := range paths {
		pathBytes += uint64(len(p)) + 16
	}
	after := heapInUse()
	per := (float64(after) - float64(before) - float64(pathBytes)) / n
	t.Logf("%.1f bytes per file at %d files in one directory", per, n)
	if per > bound {
		t.Errorf("%.1f bytes of heap per file, want at most %d", per, bound)
	}
	runtime.KeepAlive(tr)
	runtime.KeepAlive(paths)
}

// A large directory built in random order, with removals and a freeze in
// between, keeps its name index in order and agreeing with the HAMT, with
// chunks neither empty nor over-full and on average at least 81% full
// (84% measured; 78% when a full chunk just split in two)
// (full chunks hand entries to their neighbours before they split).
func TestNameIndexStaysOrderedAndFull(t *testing.T) {
	tr := New()
	must(t, tr.Mkdir("d", 1))
	rng := rand.New(rand.NewPCG(1, 2))
	var names []string
	var views []*Frozen
	for i := 0; i < 60_000; i++ {
		var name string
		switch i % 3 {
		case 0:
			name = fmt.Sprintf("f%d", rng.Uint64())
		default:
			d := SumBytes(binary.BigEndian.AppendUint64(nil, rng.Uint64()))
			name = d.String()
		}
		must(t, tr.Put("d/"+name, Entry{Kind: KindFile, Digest: SumBytes([]byte(name)), Status: StatusVerified}))
		names = append(names, name)
		if i%7 == 0 { // remove a random one
			j := rng.IntN(len(names))
			must(t, tr.Remove("d/"+names[j], 2))
			names[j] = names[len(names)-1]
			names = names[:len(names)-1]
		}
		if i%20_000 == 0 {
			views = append(views, tr.Freeze())
		}
	}
	checkInvariants(t, tr)
	d, err := tr.lookup("d")
	must(t, err)
	ix := d.x.idx
	fill := float64(len(names)) / float64(len(ix.chunks)*chunkMax)
	t.Logf("%d entries in %d chunks: %.1f%% full", len(names), len(ix.chunks), 100*fill)
	if fill < 0.81 {
		t.Errorf("%d entries in %d chunks of %d: %.0f%% full, want at least 81%%", len(names), len(ix.chunks), chunkMax, 100*fill)
	}
	runtime.KeepAlive(views)
}

// A blob created as the tracker creates it (pending, with the empty
// content's digest) and then hashed ends up stored compactly, its name
// kept as its digest and no ext: the first mount of a registry fills its
// tree this way, not from a snapshot.
func TestHashedBlobIsStoredAsItsDigest(t *testing.T) {
	tr := New()
	must(t, tr.Mkdir("blobs", 1))
	d := SumBytes([]byte("layer"))
	p := "blobs/" + d.String()
	must(t, tr.Put(p, Entry{Kind: KindFile, Digest: SumBytes(nil), Status: StatusPending}))
	n, err := tr.lookup(p)
	must(t, err)
	if n.nlen != nameLong || n.x == nil {
		t.Fatalf("a pending blob: name mode %#x", n.nlen)
	}
	must(t, tr.Update(p, func(e *Entry) { e.Digest, e.Status = d, StatusVerified }))
	if n, err = tr.lookup(p); err != nil || n.nlen != nameBlob || n.x != nil || n.name() != d.String() {
		t.Fatalf("the hashed blob: name mode %#x, ext %v, err %v", n.nlen, n.x != nil, err)
	}
	if e, _ := tr.Get(p); e.Digest != d || e.Status != StatusVerified {
		t.Fatalf("entry %+v", e)
	}
}

// Rehashing every blob of a large directory links a new node in place of
// each old one, in the HAMT leaf and in the name index (whose chunk is
// found by its head bytes); an entry the index missed would stay listed
// with its old digest. Half the blobs are hashed to digests
// their names do not spell, across a freeze, then back.
func TestRehashedBlobsStayIndexed(t *testing.T) {
	tr, paths := flatTree(t, 5000)
	var views []*Frozen
	for round := 0; round < 2; round++ {
		for i, p := range paths {
			d, _ := ParseDigest(p[len("blobs/"):])
			if round == 0 && i%2 == 0 {
				d = SumBytes([]byte(p))
			}
			must(t, tr.Put(p, Entry{Kind: KindFile, Digest: d, Status: StatusVerified}))
			if i == len(paths)/2 {
				views = append(views, tr.Freeze())
			}
		}
		checkInvariants(t, tr)
		for i, p := range paths {
			if e, _ := tr.Get(p); (e.Digest.String() == p[len("blobs/"):]) != (round == 1 || i%2 == 1) {
				t.Fatalf("round %d: %s has digest %s", round, p, e.Digest)
			}
		}
	}
	runtime.KeepAlive(views)
}
