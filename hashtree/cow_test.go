package hashtree

import (
	"bytes"
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

func frozenBytes(t interface{ Fatal(...any) }, f *Frozen, meta map[string]string) []byte {
	var buf bytes.Buffer
	if err := f.WriteSnapshot(&buf, meta); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A frozen view encodes to the snapshot the tree had when it was frozen,
// whatever random changes (every operation, big directories with name
// indexes, several freezes in a row) the tree went through afterwards, and
// the tree itself still agrees with the model.
func TestFrozenUnaffectedByLaterChanges(t *testing.T) {
	meta := map[string]string{"k": "v"}
	rapid.Check(t, func(t *rapid.T) {
		mt := newModelTree()
		for i, n := 0, rapid.IntRange(0, 40).Draw(t, "before"); i < n; i++ {
			mt.step(t)
		}
		var views []*Frozen
		var want [][]byte
		var lens []int
		for r, rounds := 0, rapid.IntRange(1, 3).Draw(t, "rounds"); r < rounds; r++ {
			want = append(want, snapshotBytes(t, mt.t, meta))
			lens = append(lens, mt.t.Len())
			f := mt.t.Freeze()
			views = append(views, f)
			// Encode the view on another goroutine while the steps run (-race checks
			// that no step writes what the view reads).
			enc := make(chan []byte, 1)
			go func() {
				var buf bytes.Buffer
				if f.WriteSnapshot(&buf, meta) != nil {
					buf.Reset()
				}
				enc <- buf.Bytes()
			}()
			for i, n := 0, rapid.IntRange(1, 40).Draw(t, "after"); i < n; i++ {
				mt.step(t)
			}
			if got := <-enc; !bytes.Equal(got, want[r]) {
				t.Fatalf("view %d: encoded during the steps, its snapshot differs from the tree's at the freeze", r)
			}
			mt.check(t)
		}
		checkInvariants(t, mt.t)
		for i, f := range views {
			if got := frozenBytes(t, f, meta); !bytes.Equal(got, want[i]) {
				t.Fatalf("view %d: its snapshot changed after the freeze (%d bytes, was %d)", i, len(got), len(want[i]))
			}
			if f.Len() != lens[i] {
				t.Fatalf("view %d: Len %d, was %d", i, f.Len(), lens[i])
			}
			back, _, err := ReadSnapshot(bytes.NewReader(want[i]))
			if err != nil {
				t.Fatal(err)
			}
			if back.Root() != f.Root() {
				t.Fatalf("view %d: Root %v, its snapshot loads as %v", i, f.Root(), back.Root())
			}
		}
	})
}

// The view is encoded on another goroutine while the tree changes
// everywhere (run with -race: no change may write what the view reads).
func TestFrozenEncodeConcurrentWithChanges(t *testing.T) {
	tr := New()
	file := func(i int) Entry {
		return Entry{Kind: KindFile, Digest: SumBytes([]byte(fmt.Sprint(i))), Status: StatusVerified, Meta: Meta{Size: int64(i)}, ChangedAt: int64(i)}
	}
	for d := 0; d < 4; d++ {
		for i := 0; i < 3000; i++ {
			if err := tr.MkdirAll(fmt.Sprintf("d%d/sub%d", d, i%3), 1); err != nil {
				t.Fatal(err)
			}
			if err := tr.Put(fmt.Sprintf("d%d/sub%d/%s", d, i%3, bigName(i)), file(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := tr.Put(fmt.Sprintf("d%d/small", d), Entry{Kind: KindSymlink, Target: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	want := snapshotBytes(t, tr, nil)
	f := tr.Freeze()
	got := make(chan []byte)
	go func() {
		var buf bytes.Buffer
		err := f.WriteSnapshot(&buf, nil)
		if err != nil {
			buf.Reset()
		}
		got <- buf.Bytes()
	}()
	ok := 0
	for i := 0; i < 3000; i++ {
		d, s := i%4, i%3
		p := fmt.Sprintf("d%d/sub%d/%s", d, s, bigName(i))
		var err error
		switch i % 5 {
		case 0:
			err = tr.Remove(p, 9)
		case 1:
			err = tr.Update(p, func(e *Entry) { e.Status = StatusMismatch; e.Meta.Size = -1 })
		case 2:
			err = tr.Rename(p, fmt.Sprintf("d%d/moved%d", (d+1)%4, i), 9)
		case 3:
			err = tr.Put(fmt.Sprintf("d%d/new%d", d, i), file(-i))
		case 4:
			err = tr.Exchange(fmt.Sprintf("d%d/sub%d", d, s), fmt.Sprintf("d%d/sub%d", (d+1)%4, s), 9)
		}
		if err == nil {
			ok++
		}
		if i%500 == 0 {
			tr.Root()
		}
	}
	if ok < 1000 {
		t.Fatalf("only %d of 3000 changes applied", ok)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("the view's snapshot (%d bytes) differs from the tree's at the freeze (%d bytes)", len(b), len(want))
	}
	checkInvariants(t, tr)
}
