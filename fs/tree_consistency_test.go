package fs_test

import (
	"bytes"
	"fmt"

	"golang.org/x/sys/unix"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trowfs/trowfs/fs/fstest"
	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/tracker"
)

// rename(2) between two names of one inode succeeds and does nothing: both names stay.
func TestRenameOntoOwnHardLinkKeepsBothNames(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	a, b := filepath.Join(e.Mnt, "a"), filepath.Join(e.Mnt, "b")
	if err := os.WriteFile(a, []byte("same inode"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(a, b); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(e.Data, "a")); err != nil {
		t.Fatalf("backing a should survive: %v", err)
	}
	e.AssertMatchesRescan()
}

// A hard link pair loaded from the snapshot (not rehashed at load) must still get both names
// updated when one of them is written through the mount.
func TestWriteToOneLinkLoadedFromSnapshotUpdatesBothNames(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	a, b := filepath.Join(e.Mnt, "a"), filepath.Join(e.Mnt, "b")
	if err := os.WriteFile(a, []byte("version 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(a, b); err != nil {
		t.Fatal(err)
	}
	e.Settle()
	time.Sleep(200 * time.Millisecond) // out of the snapshot's racy window
	e.Stop()
	e.Start()
	e.Settle()
	if err := os.WriteFile(a, []byte("version 2, longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.Settle()
	eb, _ := e.Tracker.Entry("b")
	if eb.Digest.String() != sha([]byte("version 2, longer")) {
		t.Errorf("b: digest %s status %s size %d, want the new content's", eb.Digest, eb.Status, eb.Meta.Size)
	}
	e.AssertMatchesRescan()
}

// An in-place same-size rewrite right after the previous hash settled must not be taken for
// an open that wrote nothing.
func TestSameSizeRewriteRightAfterHashIsRehashed(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode})
		p := filepath.Join(e.Mnt, "f")
		for i := 0; i < 50; i++ {
			old := []byte{'a' + byte(i%26), 'x', 'y', 'z'}
			nw := []byte{'A' + byte(i%26), 'X', 'Y', 'Z'}
			if err := os.WriteFile(p, old, 0o644); err != nil {
				t.Fatal(err)
			}
			for {
				if en, ok := e.Tracker.Entry("f"); ok && en.Status == hashtree.StatusVerified && en.Digest.String() == sha(old) {
					break
				}
			}
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(nw, 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
			e.Settle()
			if en, _ := e.Tracker.Entry("f"); en.Digest.String() != sha(nw) {
				t.Fatalf("iteration %d: digest %s, want %s", i, en.Digest, sha(nw))
			}
		}
	})
}

// fallocate(2) changes content without a write: in daemon write mode the streaming hash must not
// survive it.
func TestFallocateInvalidatesStreamingHash(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode})
		p := filepath.Join(e.Mnt, "f")
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		content := bytes.Repeat([]byte{'z'}, 1<<16)
		if _, err := f.WriteAt(content, 0); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 1<<15); err != nil {
			f.Close()
			t.Skipf("fallocate: %v", err)
		}
		f.Close()
		got, err := os.ReadFile(filepath.Join(e.Data, "f"))
		if err != nil {
			t.Fatal(err)
		}
		e.Settle()
		if en, _ := e.Tracker.Entry("f"); en.Digest.String() != sha(got) {
			t.Errorf("digest %s, backing content is %s", en.Digest, sha(got))
		}
		e.AssertMatchesRescan()
	})
}

func quickVerifyFindings(t *testing.T, e *fstest.Env) []tracker.Finding {
	t.Helper()
	e.Settle()
	r, err := e.Tracker.StartVerify(tracker.RunQuick, tracker.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Wait()
	return r.View().Findings
}

// Operations through the mount that change only an inode's ctime must keep the tree's metadata
// in step, or a later verification calls the file drift ("changed behind the mount").
func TestCtimeOnlyOperationsLeaveNoFalseDrift(t *testing.T) {
	for _, op := range []string{"setxattr", "link", "unlink-link", "chmod-link"} {
		t.Run(op, func(t *testing.T) {
			e := fstest.Mount(t, fstest.Options{})
			a, b := filepath.Join(e.Mnt, "a"), filepath.Join(e.Mnt, "b")
			if err := os.WriteFile(a, []byte("content"), 0o644); err != nil {
				t.Fatal(err)
			}
			if op != "setxattr" && op != "link" {
				if err := os.Link(a, b); err != nil {
					t.Fatal(err)
				}
				if f := quickVerifyFindings(t, e); len(f) > 0 {
					t.Fatalf("after one link: %+v", f)
				}
			}
			e.Settle()
			var err error
			switch op {
			case "setxattr":
				err = unix.Setxattr(a, "user.review", []byte("1"), 0)
			case "link":
				if err = os.Link(a, b); err == nil {
					err = os.Link(b, filepath.Join(e.Mnt, "c"))
				}
			case "unlink-link":
				err = os.Remove(a)
			case "chmod-link":
				err = os.Chmod(b, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range quickVerifyFindings(t, e) {
				t.Errorf("after %s through the mount: %+v", op, f)
			}
		})
	}
}

// Renames a registry does while files are still being hashed: over an empty directory, over a
// pending file, RENAME_EXCHANGE of a file and a directory, a directory into an excluded area.
func TestRenamesDuringHashingKeepTreeEqualToRescan(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode, Exclude: []string{"uploads/**"}})
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		for _, d := range []string{"d1/sub", "d2", "uploads", "x"} {
			if err := os.MkdirAll(m(d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		big := bytes.Repeat([]byte("r"), 4<<20)
		for _, f := range []string{"d1/sub/a", "d1/b", "f1", "f2", "x/y"} {
			if err := os.WriteFile(m(f), append(big, f...), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		steps := []error{
			unix.Rename(m("d1"), m("d2")), // os.Rename refuses an existing directory
			os.Rename(m("f1"), m("f2")),
			unix.Renameat2(unix.AT_FDCWD, m("f2"), unix.AT_FDCWD, m("x"), unix.RENAME_EXCHANGE),
			os.Rename(m("d2"), m("uploads/d2")),
			os.Rename(m("uploads/d2/sub"), m("sub")),
		}
		for i, err := range steps {
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		e.AssertMatchesRescan()
		if en, ok := e.Tracker.Entry("sub/a"); !ok || en.Status != hashtree.StatusVerified {
			t.Errorf("sub/a out of the excluded area: %+v", en)
		}
	})
}

// Concurrent writers, renames, truncates and unlinks in separate directories: the FUSE handlers
// and the hash workers interleave freely, and the tree must still equal a rescan.
func TestConcurrentChurnKeepsTreeEqualToRescan(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode, Exclude: []string{"*/tmp-*"}})
		done := make(chan error, 4)
		for w := 0; w < 4; w++ {
			go func(w int) {
				dir := filepath.Join(e.Mnt, fmt.Sprintf("w%d", w))
				err := os.Mkdir(dir, 0o755)
				for i := 0; i < 60 && err == nil; i++ {
					tmp := filepath.Join(dir, fmt.Sprintf("tmp-%d", i))
					final := filepath.Join(dir, fmt.Sprintf("f%d", i%7))
					data := bytes.Repeat([]byte{byte(i)}, 1000*(i%13)+1)
					if err = os.WriteFile(tmp, data, 0o644); err != nil {
						break
					}
					switch i % 4 {
					case 0:
						err = os.Rename(tmp, final)
					case 1:
						if err = os.Truncate(tmp, int64(i)); err == nil {
							err = os.Rename(tmp, final)
						}
					case 2:
						var f *os.File
						if f, err = os.OpenFile(final, os.O_RDWR|os.O_CREATE, 0o644); err == nil {
							_, err = f.WriteAt(data[:1], int64(i))
							f.Close()
						}
						if err == nil {
							err = os.Remove(tmp)
						}
					case 3:
						if err = os.Link(tmp, final+".l"); err == nil || os.IsExist(err) {
							err = os.Remove(tmp)
						}
					}
				}
				done <- err
			}(w)
		}
		for w := 0; w < 4; w++ {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		e.AssertMatchesRescan()
	})
}
