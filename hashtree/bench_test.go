package hashtree

import (
	"bytes"
	"encoding/binary"
	"io"
	"runtime"
	"testing"
	"time"
)

// blobName returns the i-th blob name of a Trow v0.7 flat blobs/ directory.
func blobName(i int) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return SumBytes(b[:]).String() // "sha256:<64 hex>"
}

// flatTree builds a tree with n files in blobs/, digests and root computed.
func flatTree(tb testing.TB, n int) (*Tree, []string) {
	tb.Helper()
	tr := New()
	must(tb, tr.Mkdir("blobs", 1))
	paths := make([]string, n)
	for i := range paths {
		name := blobName(i)
		paths[i] = "blobs/" + name
		d, _ := ParseDigest(name)
		must(tb, tr.Put(paths[i], Entry{Kind: KindFile, Digest: d, Status: StatusVerified,
			Meta: Meta{Size: int64(i), Mtime: int64(i) * 1e9, Ctime: int64(i) * 1e9, Ino: uint64(i)}, ChangedAt: int64(i), VerifiedAt: int64(i)}))
	}
	tr.Root()
	return tr, paths
}

// putLoop replaces the content digest of iters files spread over the
// directory, starting with the from-th, recomputing Root() after each Put.
func putLoop(tb testing.TB, tr *Tree, paths []string, from, iters int) {
	var b [8]byte
	for i := from; i < from+iters; i++ {
		binary.BigEndian.PutUint64(b[:], uint64(i))
		p := paths[(i*7919)%len(paths)]
		if err := tr.Put(p, Entry{Kind: KindFile, Digest: SumBytes(b[:]), Status: StatusPending, ChangedAt: int64(i)}); err != nil {
			tb.Fatal(err)
		}
		tr.Root()
	}
}

func BenchmarkPut1k(b *testing.B) {
	tr, paths := flatTree(b, 1000)
	b.ResetTimer()
	putLoop(b, tr, paths, 0, b.N)
}

// BenchmarkPut1M reports the cost of an update in a 1M-entry directory and
// its ratio to the same update in a 1k-entry one ("x1k", target at most 3).
// The two run interleaved in batches, so that the load of a shared machine
// weighs on both alike.
func BenchmarkPut1M(b *testing.B) {
	if testing.Short() {
		b.Skip("1M entries: skipped under -short")
	}
	small, sp := flatTree(b, 1000)
	tr, paths := flatTree(b, 1_000_000)
	var big, base time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(500, b.N-done)
		t0 := time.Now()
		putLoop(b, tr, paths, done, n)
		t1 := time.Now()
		putLoop(b, small, sp, done, n)
		big += t1.Sub(t0)
		base += time.Since(t1)
		done += n
	}
	b.StopTimer()
	b.ReportMetric(float64(big.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "ns/op-1k")
	b.ReportMetric(float64(big)/float64(base), "x1k")
}

func BenchmarkWriteSnapshot1M(b *testing.B) {
	if testing.Short() {
		b.Skip("1M entries: skipped under -short")
	}
	tr, _ := flatTree(b, 1_000_000)
	var cw countWriter
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := WriteSnapshot(&cw, tr, map[string]string{"k": "v"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cw.n)/float64(b.N)/1e6, "MB/snapshot")
}

func BenchmarkReadSnapshot1M(b *testing.B) {
	if testing.Short() {
		b.Skip("1M entries: skipped under -short")
	}
	tr, _ := flatTree(b, 1_000_000)
	var buf bytes.Buffer
	must(b, WriteSnapshot(&buf, tr, nil))
	tr = nil
	data := buf.Bytes()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := ReadSnapshot(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// bulkFlatTree builds a tree of the same shape as flatTree through the bulk
// loader that ReadSnapshot uses (which is much faster under the race
// detector).
func bulkFlatTree(n int) *Tree {
	tr := New()
	blobs := newDir("blobs", 1)
	ents := make([]*node, n)
	var slab nodeSlab // as ReadSnapshot allocates them
	for i := range ents {
		// Counter-based digests: names come out sorted, the HAMT still
		// scatters them by sha256(name).
		var d Digest
		binary.BigEndian.PutUint64(d[24:], uint64(i)+1) // never the zero digest, whose text is ""
		e := slab.node()
		e.digest = d // before init, which stores a name that is the digest written out as the digest
		e.init(d.String(), KindFile, true)
		e.status = StatusVerified
		e.meta = Meta{Size: int64(i), Mtime: int64(i) * 1e9, Ctime: int64(i) * 1e9, Ino: uint64(i)}
		e.changedAt, e.verifiedAt = int64(i), int64(i)
		ents[i] = e
	}
	tr.closeDir(openDir{n: blobs, kids: ents})
	tr.closeDir(openDir{n: tr.root, kids: []*node{blobs}})
	tr.count = tr.root.x.total()
	tr.Root()
	return tr
}

// TestMemoryPerEntry measures the heap held per file in a 1M-entry flat
// directory (names "sha256:<64 hex>"), the shape of Trow's blobs/: built
// by a million Puts, and as loaded from a snapshot. Under the race
// detector, where a million Puts take minutes, only the second is measured.
func TestMemoryPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("1M entries: skipped under -short")
	}
	const n = 1_000_000
	check := func(how string, build func() *Tree) *Tree {
		before := heapInUse()
		tr := build()
		after := heapInUse()
		per := float64(int64(after)-int64(before)) / n
		t.Logf("%s: %.1f bytes per file entry at %d files in one directory", how, per, n)
		if per > 256 {
			t.Errorf("%s: %.1f bytes per entry, want at most 256", how, per)
		}
		return tr
	}
	if !raceEnabled {
		check("built by Put", func() *Tree { tr, _ := flatTree(t, n); return tr })
	} else {
		t.Log("race detector on: the Put-built tree is measured without -race only")
	}
	bulk := check("bulk-loaded", func() *Tree { return bulkFlatTree(n) })
	runtime.KeepAlive(bulk)
}
