package hashtree

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"

	"pgregory.net/rapid"
)

// several frozen views of different epochs are encoded at
// the same time, on their own goroutines, while the tree goes on changing
// and is frozen again (each Freeze refreshes digests while older views are
// still being read), and the live tree's lazy digests are refreshed by
// Root, Summary, Get, Walk and Diff in between. No synchronisation orders a view's reads after the
// changes, so -race reports any change or digest refresh that writes what
// an older view reads; every view must still encode to the tree at its
// freeze.
func TestFrozenViewsOfSeveralEpochsInFlight(t *testing.T) {
	meta := map[string]string{"k": "v"}
	rapid.Check(t, func(t *rapid.T) {
		mt := newModelTree()
		for i, n := 0, rapid.IntRange(0, 40).Draw(t, "before"); i < n; i++ {
			mt.step(t)
		}
		type inflight struct {
			want []byte
			got  chan []byte
			f    *Frozen
		}
		var views []inflight
		for r, rounds := 0, rapid.IntRange(2, 5).Draw(t, "rounds"); r < rounds; r++ {
			want := snapshotBytes(t, mt.t, meta)
			f := mt.t.Freeze()
			got := make(chan []byte, 1)
			go func() {
				var buf bytes.Buffer
				if f.WriteSnapshot(&buf, meta) != nil {
					buf.Reset()
				}
				got <- buf.Bytes()
			}()
			views = append(views, inflight{want, got, f})
			for i, n := 0, rapid.IntRange(0, 30).Draw(t, "after"); i < n; i++ {
				mt.step(t)
				// The live tree's lazy digests are filled in while views are read.
				switch rapid.IntRange(0, 4).Draw(t, "read") {
				case 0:
					mt.t.Root()
				case 1:
					mt.t.Summary(mt.drawExisting(t, "sum"))
				case 2:
					mt.t.Get(mt.drawExisting(t, "get"))
				case 3:
					_ = mt.t.Walk(func(string, Entry) error { return nil })
				case 4:
					_ = Diff(mt.t, mt.t, func(Change) error { return nil })
				}
			}
			// Keep up to three views encoding; collect the oldest only now and then.
			if len(views) > 2 || rapid.Bool().Draw(t, "collect") {
				v := views[0]
				views = views[1:]
				if b := <-v.got; !bytes.Equal(b, v.want) {
					t.Fatalf("round %d: a view encoded while newer epochs changed the tree differs from the tree at its freeze", r)
				}
			}
		}
		for _, v := range views {
			if b := <-v.got; !bytes.Equal(b, v.want) {
				t.Fatalf("a view encoded while newer epochs changed the tree differs from the tree at its freeze")
			}
			if b := frozenBytes(t, v.f, meta); !bytes.Equal(b, v.want) {
				t.Fatalf("a view's snapshot changed after its freeze")
			}
		}
		mt.check(t)
		checkInvariants(t, mt.t)
	})
}

// Memory: while a view is held (a long encode), every file is changed many
// times. Each entry, directory and index chunk is copied at most once per epoch, so the live
// heap grows by at most about one more tree, however many changes there are.
func TestFrozenViewCopiesOncePerEpoch(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := heap()
	tr := New()
	const dirs, per = 8, 4000
	for d := 0; d < dirs; d++ {
		for i := 0; i < per; i++ {
			p := fmt.Sprintf("d%d/%s", d, bigName(i))
			if err := tr.MkdirAll(fmt.Sprintf("d%d", d), 1); err != nil {
				t.Fatal(err)
			}
			if err := tr.Put(p, Entry{Kind: KindFile, Digest: SumBytes([]byte(p)), Status: StatusVerified, ChangedAt: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	tr.Root()
	size := heap() - base
	f := tr.Freeze()
	const rounds = 6
	for r := 0; r < rounds; r++ {
		for d := 0; d < dirs; d++ {
			for i := 0; i < per; i++ {
				if err := tr.Update(fmt.Sprintf("d%d/%s", d, bigName(i)), func(e *Entry) { e.ChangedAt = int64(r + 2) }); err != nil {
					t.Fatal(err)
				}
			}
		}
		tr.Root()
	}
	grown := heap() - base - size
	t.Logf("tree %d KiB; held view, %d changes of every file: heap grew %d KiB", size>>10, rounds, grown>>10)
	if grown > size*3/2 {
		t.Errorf("heap grew by %d KiB for a tree of %d KiB while a view was held: more than one copy per epoch", grown>>10, size>>10)
	}
	runtime.KeepAlive(f)
}
