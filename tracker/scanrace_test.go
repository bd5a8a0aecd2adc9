package tracker

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/hashtree"
)

// A directory swapped for a symlink or a file while a scan walks DATA (someone writing DATA
// behind the mount, or renaming during `trowfs verify`) is not followed and does not fail the
// scan: the walk reports what it found, the way it skips a directory removed meanwhile.
func TestRescanSurvivesDirectorySwappedDuringScan(t *testing.T) {
	data := t.TempDir()
	for _, d := range []string{"swap/a/b", "keep"} {
		if err := os.MkdirAll(filepath.Join(data, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range []string{"swap/a/b/f", "keep/g", "swap/h"} {
		if err := os.WriteFile(filepath.Join(data, p), []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Two things to swap with the directory "swap": a symlink out of DATA and a regular file.
	if err := os.Symlink(outside, filepath.Join(data, "as-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "as-file"), []byte("file"), 0o644); err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Open(data, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			other := []string{"as-link", "as-file"}[i/2%2]
			_ = unix.Renameat2(dfd, "swap", dfd, other, unix.RENAME_EXCHANGE)
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	scans, failed := 0, 0
	var firstErr error
	for time.Now().Before(deadline) {
		tr, err := Rescan(context.Background(), data, ScanOptions{Workers: 1})
		scans++
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		_ = tr.Walk(func(p string, _ hashtree.Entry) error {
			if filepath.Base(p) == "secret" {
				t.Errorf("the scan followed a symlink out of DATA: %s", p)
			}
			return nil
		})
	}
	stop.Store(true)
	wg.Wait()
	if failed > 0 {
		t.Errorf("%d of %d scans failed while a directory was swapped; first: %v", failed, scans, firstErr)
	}
}
