package tracker

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/trowfs/trowfs/hashtree"
)

// A checkpoint encodes outside the lock: mutations reported while it runs go ahead (the test
// makes 30 create/commit/rename cycles happen between the freeze and the encoding), and the
// snapshot it writes loads as the tree was at the freeze. The next checkpoint has them.
func TestCheckpointConcurrentWithMutations(t *testing.T) {
	data := t.TempDir()
	for _, d := range []string{"uploads", "blobs/d0", "blobs/d1", "blobs/d2"} {
		if err := os.MkdirAll(filepath.Join(data, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tr := newTracker(t, data)
	defer tr.Close()
	tr.WithTree(func(tree *hashtree.Tree) {
		for i := 0; i < 5000; i++ {
			p := fmt.Sprintf("blobs/d%d/f%04d", i%3, i)
			if err := tree.MkdirAll(filepath.Dir(p), 1); err != nil {
				t.Fatal(err)
			}
			if err := tree.Put(p, hashtree.Entry{Kind: hashtree.KindFile, Digest: hashtree.SumBytes([]byte(p)), Status: hashtree.StatusVerified, ChangedAt: 1}); err != nil {
				t.Fatal(err)
			}
		}
	})

	const cycles = 30
	cycle := func(i int) {
		up, to := fmt.Sprintf("uploads/u%d", i), fmt.Sprintf("blobs/d%d/b%d", i%3, i)
		f, err := os.OpenFile(filepath.Join(data, up), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			t.Error(err)
			return
		}
		s := tr.OpenWrite(up, int(f.Fd()), true)
		f.WriteString("blob " + up)
		f.Close()
		s.Close()
		done := tr.NameOp()
		if err := os.Rename(filepath.Join(data, up), filepath.Join(data, to)); err != nil {
			t.Error(err)
		}
		tr.Rename(up, to, false)
		done()
	}
	var atFreeze []byte
	tr.ckptHook = func(stage string) {
		switch stage {
		case "frozen":
			var buf bytes.Buffer
			if err := hashtree.WriteSnapshot(&buf, tr.tree, nil); err != nil {
				t.Error(err)
			}
			atFreeze = buf.Bytes()
		case "unlocked":
			// Would deadlock if the checkpoint still held the lock.
			mutated := make(chan struct{})
			go func() {
				defer close(mutated)
				for i := 0; i < cycles; i++ {
					cycle(i)
				}
			}()
			<-mutated
		}
	}
	if err := tr.WriteSnapshot(false); err != nil {
		t.Fatal(err)
	}
	tr.ckptHook = nil
	if !tr.Dirty() {
		t.Errorf("mutations after the freeze left the tracker clean")
	}
	want, _, err := hashtree.ReadSnapshot(bytes.NewReader(atFreeze))
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := ReadSnapshotFile(data)
	if err != nil {
		t.Fatal(err)
	}
	sameTree(t, got, want)
	if _, ok := got.Get("blobs/d0/b0"); ok {
		t.Errorf("the snapshot has an entry renamed after the freeze")
	}

	if !tr.Drain(10e9) {
		t.Fatal("hashing did not settle")
	}
	if err := tr.WriteSnapshot(false); err != nil {
		t.Fatal(err)
	}
	got, _, err = ReadSnapshotFile(data)
	if err != nil {
		t.Fatal(err)
	}
	tr.WithTree(func(live *hashtree.Tree) { sameTree(t, got, live) })
	if e, ok := got.Get(fmt.Sprintf("blobs/d%d/b%d", (cycles-1)%3, cycles-1)); !ok || e.Status != hashtree.StatusVerified && e.Status != hashtree.StatusUnverified {
		t.Errorf("the next snapshot lacks the last committed blob: %+v %v", e, ok)
	}
}

// sameTree fails unless a and b have the same root digest and entries.
func sameTree(t *testing.T, a, b *hashtree.Tree) {
	t.Helper()
	if a.Root() != b.Root() || a.Len() != b.Len() {
		t.Fatalf("trees differ: root %v len %d vs root %v len %d", a.Root(), a.Len(), b.Root(), b.Len())
	}
	var ea, eb []string
	a.Walk(func(p string, e hashtree.Entry) error { ea = append(ea, fmt.Sprintf("%s %+v", p, e)); return nil })
	b.Walk(func(p string, e hashtree.Entry) error { eb = append(eb, fmt.Sprintf("%s %+v", p, e)); return nil })
	for i := range ea {
		if ea[i] != eb[i] {
			t.Fatalf("entry %d: %s vs %s", i, ea[i], eb[i])
		}
	}
}
