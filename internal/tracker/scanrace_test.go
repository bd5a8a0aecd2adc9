package tracker

import (
	"context"
	"fmt"
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

// TestLoadSurvivesDirectorySwappedDuringReconcile: the mount-time reconcile walks a directory that
// others may change under it like a rescan does; a directory replaced by a file or a symlink while
// the walk reads it is reported as gone (the next change or scrub sees the new thing), never a
// failed mount.
func TestLoadSurvivesDirectorySwappedDuringReconcile(t *testing.T) {
	data := t.TempDir()
	for i := 0; i < 40; i++ {
		write(t, filepath.Join(data, "swap", fmt.Sprintf("d%02d", i), "f"), "x")
	}
	write(t, filepath.Join(data, "keep/g"), "g")
	outside := t.TempDir()
	write(t, filepath.Join(outside, "secret"), "outside")
	if err := os.Symlink(outside, filepath.Join(data, "as-link")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(data, "as-file"), "file")
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
	loads, failed := 0, 0
	var firstErr error
	for time.Now().Before(deadline) {
		tr := newTracker(t, data)
		_, err := tr.Load(context.Background(), VerifyQuick)
		loads++
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		}
		tr.Drain(10 * time.Second)
		tr.WithTree(func(tree *hashtree.Tree) {
			_ = tree.Walk(func(p string, _ hashtree.Entry) error {
				if filepath.Base(p) == "secret" {
					t.Errorf("the reconcile followed a symlink out of DATA: %s", p)
				}
				return nil
			})
		})
		tr.Close()
		os.RemoveAll(filepath.Join(data, ".trowfs"))
	}
	stop.Store(true)
	wg.Wait()
	if failed > 0 {
		t.Errorf("%d of %d loads failed while a directory was swapped; first: %v", failed, loads, firstErr)
	}
}
