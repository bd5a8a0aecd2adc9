package tracker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/hashtree"
)

// Close must not leave a verification run working on DATA's descriptor: once Close has closed
// it, the number can name another directory, and the run then judges DATA by that directory.
func TestCloseStopsVerifyRuns(t *testing.T) {
	data, other := t.TempDir(), t.TempDir()
	for i := 0; i < 20; i++ {
		if err := os.WriteFile(filepath.Join(data, fmt.Sprintf("f%02d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tr := newTracker(t, data)
	if _, err := tr.Load(context.Background(), VerifyQuick); err != nil {
		t.Fatal(err)
	}
	if !tr.Drain(10 * time.Second) {
		t.Fatal("did not settle")
	}
	// As the HTTP API starts it: no context, so nothing but Close can end it.
	r, err := tr.StartVerify(RunFull, RunOptions{Rate: 20})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	rootFd := tr.rootFd
	tr.Close()
	// The next directory the process opens gets the freed number (forced here with dup3).
	ofd, err := unix.Open(other, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ofd)
	if ofd != rootFd {
		if err := unix.Dup3(ofd, rootFd, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(rootFd)
	}
	r.Wait()
	v := r.View()
	if len(v.Findings) > 0 {
		t.Errorf("the run went on after Close and reported %d findings against another directory, first: %+v", len(v.Findings), v.Findings[0])
	}
	if _, ok := tr.Entry("f19"); !ok {
		t.Errorf("the run removed f19 from the tree after Close")
	}
}

// A file left pending by the previous mount (a writer still open at unmount, or a drain that
// timed out) is "rehashed at the next mount"; with --verify-on-start=off it must be too.
func TestVerifyOffStillRehashesPendingFiles(t *testing.T) {
	data := t.TempDir()
	p := filepath.Join(data, "f")
	if err := os.WriteFile(p, []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := newTracker(t, data)
	if _, err := tr.Load(context.Background(), VerifyQuick); err != nil {
		t.Fatal(err)
	}
	if !tr.Drain(10 * time.Second) {
		t.Fatal("did not settle")
	}
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	tr.OpenWrite("f", fd, false)
	if _, err := unix.Pwrite(fd, []byte("CONTENT, changed"), 0); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if n := tr.AbandonWriters(); n != 1 { // as server.stop does after the unmount
		t.Fatalf("AbandonWriters = %d, want 1", n)
	}
	if err := tr.WriteSnapshot(true); err != nil {
		t.Fatal(err)
	}
	tr.Close()

	tr2 := newTracker(t, data)
	defer tr2.Close()
	if _, err := tr2.Load(context.Background(), VerifyOff); err != nil {
		t.Fatal(err)
	}
	if !tr2.Drain(10 * time.Second) {
		t.Fatal("did not settle")
	}
	if e, _ := tr2.Entry("f"); e.Status == hashtree.StatusPending {
		t.Errorf("f is still %s after the next mount settled (digest %s)", e.Status, e.Digest)
	}
	assertEqualsRescan(t, tr2)
}

// SetClassifier (run by the notification goroutine when a layout appears) swaps the blob rule
// under the lock; a verification run must read it under the lock too.
func TestVerifyReadsTheBlobRuleUnderTheLock(t *testing.T) {
	data := t.TempDir()
	for i := 0; i < 50; i++ {
		if err := os.WriteFile(filepath.Join(data, fmt.Sprintf("f%02d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tr := newTracker(t, data)
	defer tr.Close()
	if _, err := tr.Load(context.Background(), VerifyQuick); err != nil {
		t.Fatal(err)
	}
	if !tr.Drain(10 * time.Second) {
		t.Fatal("did not settle")
	}
	r, err := tr.StartVerify(RunFull, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if err := tr.SetClassifier([]string{"uploads/**"}, func(string) (digest.Digest, bool) { return "", false }); err != nil {
			t.Fatal(err)
		}
	}
	r.Wait()
}
