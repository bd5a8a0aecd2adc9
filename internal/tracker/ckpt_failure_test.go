package tracker

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/trowfs/trowfs/hashtree"
)

func putFile(t *testing.T, tr *Tracker, p string) {
	t.Helper()
	tr.WithTree(func(tree *hashtree.Tree) {
		if err := tree.MkdirAll(filepath.Dir(p), 1); err != nil {
			t.Fatal(err)
		}
		if err := tree.Put(p, hashtree.Entry{Kind: hashtree.KindFile, Digest: hashtree.SumBytes([]byte(p)), Status: hashtree.StatusVerified, ChangedAt: 1}); err != nil {
			t.Fatal(err)
		}
	})
	tr.mu.Lock()
	tr.dirty = true
	tr.mu.Unlock()
}

// the dirty flag is cleared at the freeze, then the write fails (here the rename
// over tree.snap, which the test turns into a non-empty directory while the view is encoded).
// Nothing changes the tree afterwards, so only the failure can leave the tracker dirty: it must,
// or the periodic checkpoint (which skips a clean tracker) would never retry. The retry then
// writes the tree.
func TestCheckpointFailureAfterFreezeLeavesDirty(t *testing.T) {
	data := t.TempDir()
	tr := newTracker(t, data)
	defer tr.Close()
	for i := 0; i < 100; i++ {
		putFile(t, tr, filepath.Join("blobs", "d", string(rune('a'+i%26))+string(rune('a'+i/26))))
	}
	snap := filepath.Join(data, StateDirName, SnapshotFile)
	tr.ckptHook = func(stage string) {
		if stage == "unlocked" {
			if err := os.MkdirAll(filepath.Join(snap, "x"), 0o700); err != nil {
				t.Error(err)
			}
		}
	}
	if err := tr.WriteSnapshot(false); err == nil {
		t.Fatal("the checkpoint succeeded although tree.snap was a non-empty directory")
	}
	tr.ckptHook = nil
	if !tr.Dirty() {
		t.Fatal("a checkpoint that failed after the freeze left the tracker clean: it would never be retried")
	}
	if err := os.RemoveAll(snap); err != nil {
		t.Fatal(err)
	}
	if err := tr.WriteSnapshot(false); err != nil {
		t.Fatal(err)
	}
	if tr.Dirty() {
		t.Error("dirty after a successful checkpoint with no change since its freeze")
	}
	got, _, err := ReadSnapshotFile(data)
	if err != nil {
		t.Fatal(err)
	}
	tr.WithTree(func(live *hashtree.Tree) { sameTree(t, got, live) })
}

// two checkpoints overlap. The first is held after its freeze (in its encoding
// phase) for as long as the second needs to freeze a later tree and write it, if it can. Whatever
// the interleaving, the file left behind must be the later freeze, never the earlier one landing
// last.
func TestOverlappingCheckpointsKeepTheLater(t *testing.T) {
	data := t.TempDir()
	tr := newTracker(t, data)
	defer tr.Close()
	putFile(t, tr, "blobs/first")

	var mu sync.Mutex
	freezes := 0
	secondFrozen := make(chan struct{})
	firstUnlocked := make(chan struct{})
	tr.ckptHook = func(stage string) {
		mu.Lock()
		defer mu.Unlock()
		switch stage {
		case "frozen":
			freezes++
			if freezes == 2 {
				close(secondFrozen)
			}
		case "unlocked":
			if freezes == 1 {
				close(firstUnlocked)
				mu.Unlock()
				// Give the second checkpoint every chance to freeze and write first.
				select {
				case <-secondFrozen:
					time.Sleep(200 * time.Millisecond)
				case <-time.After(500 * time.Millisecond):
				}
				mu.Lock()
			}
		}
	}
	errs := make(chan error, 2)
	go func() { errs <- tr.WriteSnapshot(false) }()
	<-firstUnlocked
	putFile(t, tr, "blobs/second") // after the first freeze: only the second checkpoint has it
	go func() { errs <- tr.WriteSnapshot(false) }()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	tr.ckptHook = nil
	got, _, err := ReadSnapshotFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Get("blobs/second"); !ok {
		t.Fatal("the snapshot on disk is the earlier checkpoint's: it landed after the later one")
	}
	tr.WithTree(func(live *hashtree.Tree) { sameTree(t, got, live) })
}
