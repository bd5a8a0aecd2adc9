package hashtree

import (
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
