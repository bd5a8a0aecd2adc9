package tracker

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// A verification run passes every entry it finds added, changed or removed behind the mount to
// the SetBehindHook function (which a mount uses to drop the kernel's caches), and nothing after
// the hook is removed.
func TestBehindHookGetsDrift(t *testing.T) {
	data := t.TempDir()
	for _, n := range []string{"d/keep", "d/changed", "d/gone"} {
		write(t, filepath.Join(data, n), n)
	}
	tr, err := New(Options{Root: data})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Lock(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Load(context.Background(), VerifyQuick); err != nil {
		t.Fatal(err)
	}
	if !tr.Drain(10 * time.Second) {
		t.Fatal("did not settle")
	}
	var mu sync.Mutex
	var got []string
	remove := tr.SetBehindHook(func(rel string) {
		mu.Lock()
		got = append(got, rel)
		mu.Unlock()
	})
	write(t, filepath.Join(data, "d/added"), "added")
	write(t, filepath.Join(data, "newdir/inside"), "inside")
	write(t, filepath.Join(data, "d/changed"), "changed behind the mount")
	if err := os.Remove(filepath.Join(data, "d/gone")); err != nil {
		t.Fatal(err)
	}
	verify := func() {
		r, err := tr.StartVerify(RunQuick, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r.Wait()
	}
	verify()
	mu.Lock()
	slices.Sort(got)
	// newdir/inside is new with its directory: the directory's name is what changed.
	want := []string{"d/added", "d/changed", "d/gone", "newdir"}
	if !slices.Equal(got, want) {
		t.Fatalf("hook got %q, want %q", got, want)
	}
	got = nil
	mu.Unlock()
	remove()
	write(t, filepath.Join(data, "d/added2"), "added")
	verify()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 0 {
		t.Fatalf("removed hook still got %q", got)
	}
}
