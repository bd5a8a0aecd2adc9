package tracker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/hashtree"
)

// window is how long a test leaves a waiter alone to see whether it wakes up by itself. A
// polling waiter wakes many times in it; one woken by the end of the work wakes not at all. Only
// the count of wake-ups is asserted, never a duration.
const window = 30 * time.Millisecond

// guard bounds a wait that must end for the test to pass, so a regression fails instead of hanging.
const guard = 10 * time.Second

func loadedTracker(t *testing.T, data string, opts Options) *Tracker {
	t.Helper()
	opts.Root = data
	tr, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Lock(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Load(context.Background(), VerifyQuick); err != nil {
		t.Fatal(err)
	}
	if !tr.Drain(guard) {
		t.Fatal("load did not settle")
	}
	return tr
}

func openWrite(t *testing.T, p string) int {
	t.Helper()
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// Drain sleeps until the work it waits for ends, whichever way it ends, and then returns at
// once: it does not look again at an interval of its own.
func TestDrainWakesWhenWorkEnds(t *testing.T) {
	for _, c := range []struct {
		name    string
		settled bool
		end     func(t *testing.T, tr *Tracker, data string, s *Session)
	}{
		{"last writer closes and the hash commits", true, func(t *testing.T, tr *Tracker, data string, s *Session) {
			s.Close()
		}},
		{"the written file is unlinked", true, func(t *testing.T, tr *Tracker, data string, s *Session) {
			if err := os.Remove(filepath.Join(data, "f")); err != nil {
				t.Fatal(err)
			}
			tr.Unlink("f")
		}},
		{"the mount is gone", true, func(t *testing.T, tr *Tracker, data string, s *Session) {
			tr.AbandonWriters()
		}},
		{"the tracker closes", false, func(t *testing.T, tr *Tracker, data string, s *Session) {
			tr.Close()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := t.TempDir()
			write(t, filepath.Join(data, "f"), "old")
			tr := loadedTracker(t, data, Options{HashWorkers: 1})
			s := tr.OpenWrite("f", openWrite(t, filepath.Join(data, "f")), false)
			defer func() {
				s.Close()
				if c.settled { // the last case closed it already; Close is not idempotent
					tr.Close()
				}
			}()
			wakes0 := tr.drainWakes.Load()
			res := make(chan bool, 1)
			go func() { res <- tr.Drain(time.Hour) }()
			time.Sleep(window)
			select {
			case ok := <-res:
				t.Fatalf("Drain returned %v while a writer was open", ok)
			default:
			}
			if n := tr.drainWakes.Load() - wakes0; n != 0 {
				t.Errorf("Drain woke %d times while nothing changed", n)
			}
			c.end(t, tr, data, s)
			select {
			case ok := <-res:
				if ok != c.settled {
					t.Errorf("Drain = %v, want %v", ok, c.settled)
				}
			case <-time.After(guard):
				t.Fatal("Drain did not return when the work ended")
			}
			// Once for the end of the work (the hash's end, the unlink, the abandon, the close).
			if n := tr.drainWakes.Load() - wakes0; n > 1 {
				t.Errorf("Drain woke %d times, want at most 1", n)
			}
		})
	}
}

// Drain still gives up at its timeout when the work does not end.
func TestDrainTimesOutWithAWriterOpen(t *testing.T) {
	data := t.TempDir()
	write(t, filepath.Join(data, "f"), "old")
	tr := loadedTracker(t, data, Options{HashWorkers: 1})
	defer tr.Close()
	s := tr.OpenWrite("f", openWrite(t, filepath.Join(data, "f")), false)
	defer s.Close()
	if tr.Drain(time.Millisecond) {
		t.Error("Drain reported settled with a writer open")
	}
	if tr.Drain(0) {
		t.Error("Drain(0) reported settled with a writer open")
	}
}

// A hash that finds its file gone while a rename or unlink is between its syscall and its report
// sleeps until the last one reports, and is woken by it rather than spinning.
func TestWaitRenamesWakesWhenTheLastNameOpEnds(t *testing.T) {
	data := t.TempDir()
	tr := loadedTracker(t, data, Options{HashWorkers: 1})
	defer tr.Close()
	done1, done2 := tr.NameOp(), tr.NameOp()
	returned := make(chan struct{})
	go func() {
		tr.waitRenames()
		close(returned)
	}()
	time.Sleep(window)
	done1()
	time.Sleep(window)
	select {
	case <-returned:
		t.Fatal("waitRenames returned with a rename still in progress")
	default:
	}
	if n := tr.renameWakes.Load(); n != 0 {
		t.Errorf("waitRenames woke %d times before the last rename ended", n)
	}
	done2()
	select {
	case <-returned:
	case <-time.After(guard):
		t.Fatal("waitRenames did not return when the last rename ended")
	}
	if n := tr.renameWakes.Load(); n > 1 {
		t.Errorf("waitRenames woke %d times, want at most 1", n)
	}
	// With nothing in progress it does not wait at all.
	tr.waitRenames()
}

// The wait for a rename's report stays bounded: a NameOp that never ends does not hold a hash
// worker for ever.
func TestWaitRenamesGivesUpAtItsBound(t *testing.T) {
	data := t.TempDir()
	tr := loadedTracker(t, data, Options{HashWorkers: 1})
	defer tr.Close()
	defer tr.NameOp()()
	returned := make(chan struct{})
	go func() {
		tr.waitRenames()
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(guard):
		t.Fatal("waitRenames did not give up")
	}
}

// A hash whose file keeps changing under it backs off without holding its worker: with one
// worker, another file's hash commits while the first waits, and Close does not wait for the
// back-off.
func TestHashBackoffDoesNotHoldAWorker(t *testing.T) {
	data := t.TempDir()
	write(t, filepath.Join(data, "a"), "a")
	write(t, filepath.Join(data, "b"), "b")
	verified := make(chan hashtree.Entry, 16)
	tr := loadedTracker(t, data, Options{HashWorkers: 1, Notify: func(ev Event) {
		if ev.Path == "b" && ev.Entry.Status == hashtree.StatusVerified {
			verified <- ev.Entry
		}
	}})
	closed := false
	defer func() {
		if !closed {
			tr.Close()
		}
	}()
	tr.retryBackoff = time.Hour
	attempts := 0
	tr.hashHook = func(rel string) {
		if rel != "a" {
			return
		}
		attempts++
		// Something outside the mount appends to a while it is hashed.
		f, err := os.OpenFile(filepath.Join(data, "a"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		f.WriteString("x")
		f.Close()
	}
	sa := tr.OpenWrite("a", openWrite(t, filepath.Join(data, "a")), false)
	write(t, filepath.Join(data, "a"), "a1")
	sa.Close()
	sb := tr.OpenWrite("b", openWrite(t, filepath.Join(data, "b")), false)
	write(t, filepath.Join(data, "b"), "new b")
	sb.Close()
	want := hashtree.SumBytes([]byte("new b"))
	for got := false; !got; {
		select {
		case e := <-verified:
			got = e.Digest == want
		case <-time.After(guard):
			t.Fatal("b was not hashed while a was backing off")
		}
	}
	tr.mu.Lock()
	n := attempts
	tr.mu.Unlock()
	if n != 5 {
		t.Errorf("a was hashed %d times before backing off, want 5", n)
	}
	if e, _ := tr.Entry("a"); e.Status != hashtree.StatusPending {
		t.Errorf("a is %v while its hash backs off, want pending", e.Status)
	}
	if tr.Drain(0) {
		t.Error("Drain reported settled while a hash was backing off")
	}
	tr.Close() // must not wait an hour
	closed = true
}

// After its back-off, the hash of a file that kept changing is tried again and commits once the
// file is still.
func TestHashThatKeptChangingIsRetried(t *testing.T) {
	data := t.TempDir()
	write(t, filepath.Join(data, "a"), "a")
	tr := loadedTracker(t, data, Options{HashWorkers: 1})
	defer tr.Close()
	tr.retryBackoff = time.Millisecond
	attempts := 0
	tr.hashHook = func(rel string) {
		if rel != "a" || attempts == 7 {
			return
		}
		attempts++
		f, err := os.OpenFile(filepath.Join(data, "a"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		f.WriteString("x")
		f.Close()
	}
	sa := tr.OpenWrite("a", openWrite(t, filepath.Join(data, "a")), false)
	write(t, filepath.Join(data, "a"), "a1")
	sa.Close()
	if !tr.Drain(guard) {
		t.Fatal("did not settle")
	}
	e, _ := tr.Entry("a")
	if want := hashtree.SumBytes([]byte("a1" + strings.Repeat("x", 7))); e.Status != hashtree.StatusVerified || e.Digest != want {
		t.Errorf("a = %v %v, want verified %v", e.Status, e.Digest, want)
	}
	assertEqualsRescan(t, tr)
}

// A bookkeeping problem found with the lock held is recorded at once, without a goroutine each.
func TestInternalFindingsUnderTheLockSpawnNoGoroutines(t *testing.T) {
	data := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr := loadedTracker(t, data, Options{HashWorkers: 1, Logger: quiet})
	defer tr.Close()
	const n = 200
	before := runtime.NumGoroutine()
	tr.mu.Lock()
	for i := 0; i < n; i++ {
		tr.resyncLocked(fmt.Sprintf("missing/%d", i), "test", nil)
	}
	during := runtime.NumGoroutine()
	recorded := 0
	for k := range tr.findings {
		if k.kind == FindingInternal {
			recorded++
		}
	}
	tr.mu.Unlock()
	if during > before {
		t.Errorf("%d internal findings started %d goroutines", n, during-before)
	}
	if recorded != n {
		t.Errorf("%d internal findings recorded under the lock, want %d", recorded, n)
	}
	// Through an operation, too: the finding is there when the operation returns.
	tr.Rename("nothing", "here", false)
	found := false
	for _, f := range tr.Findings("") {
		found = found || (f.Kind == FindingInternal && f.Path == "here")
	}
	if !found {
		t.Error("the internal finding of a rename of an untracked source is missing when Rename returns")
	}
}

// The goroutine that waits for a remount's hashing to settle, to list what changed while
// unmounted, ends when the tracker closes before that: it does not spin on a Drain that
// returns at once.
func TestChangesWaitEndsWhenTheTrackerCloses(t *testing.T) {
	data := t.TempDir()
	write(t, filepath.Join(data, "f"), "f")
	tr := loadedTracker(t, data, Options{HashWorkers: 1})
	if err := tr.WriteSnapshot(true); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	write(t, filepath.Join(data, "g"), "changed while unmounted")

	before := runtime.NumGoroutine()
	tr2, err := New(Options{Root: data, HashWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr2.Lock(); err != nil {
		t.Fatal(err)
	}
	// A writer keeps the tree unsettled, so the changes are still waited for at Close.
	s := tr2.OpenWrite("f", openWrite(t, filepath.Join(data, "f")), false)
	if _, err := tr2.Load(context.Background(), VerifyQuick); err != nil {
		t.Fatal(err)
	}
	tr2.Close()
	s.Close()
	deadline := time.Now().Add(guard)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after Close, %d before New", runtime.NumGoroutine(), before)
		}
		time.Sleep(time.Millisecond)
	}
}
