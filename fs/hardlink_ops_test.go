package fs_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	trowfs "github.com/trowfs/trowfs/fs"
	"github.com/trowfs/trowfs/fs/fstest"
)

// namesAgree checks that every name shows one inode with nlink links, the content want, and (when
// the tree has the name) the digest of want in getxattr, .state's source.
func namesAgree(t *testing.T, e *fstest.Env, when string, want []byte, names ...string) {
	t.Helper()
	e.Settle()
	var ino uint64
	for i, rel := range names {
		p := filepath.Join(e.Mnt, rel)
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatalf("%s: stat %s: %v", when, rel, err)
		}
		if i == 0 {
			ino = st.Ino
		}
		if st.Ino != ino || int(st.Nlink) != len(names) || st.Size != int64(len(want)) {
			t.Errorf("%s: %s ino %d nlink %d size %d; want ino %d nlink %d size %d", when, rel, st.Ino, st.Nlink, st.Size, ino, len(names), len(want))
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var fst syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &fst); err != nil || fst.Ino != st.Ino {
			t.Errorf("%s: fstat(open %s).st_ino = %d, %v; stat says %d", when, rel, fst.Ino, err, st.Ino)
		}
		f.Close()
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: read %s = %q, %v; want %q", when, rel, got, err, want)
		}
		if v, err := getx(t, p, trowfs.XattrDigest); err != nil || v != sha(want) {
			t.Errorf("%s: digest via %s = %q, %v; want %s", when, rel, v, err, sha(want))
		}
		if en, ok := e.Tracker.Entry(rel); !ok || en.Digest.String() != sha(want) {
			t.Errorf("%s: tree entry of %s = %+v, %v", when, rel, en, ok)
		}
	}
}

// Three names in three directories: writes, truncates and appends through each are seen through all.
func TestHardLinkThreeNamesInDifferentDirectories(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode})
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		for _, d := range []string{"d1", "d2/sub"} {
			if err := os.MkdirAll(m(d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		names := []string{"a", "d1/b", "d2/sub/c"}
		if err := os.WriteFile(m(names[0]), []byte("one"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, n := range names[1:] {
			if err := os.Link(m(names[0]), m(n)); err != nil {
				t.Fatal(err)
			}
		}
		namesAgree(t, e, "linked", []byte("one"), names...)
		content := []byte("one")
		for i := 0; i < 6; i++ {
			via := names[i%3]
			switch i % 3 {
			case 0:
				content = []byte(fmt.Sprintf("rewrite %d through %s", i, via))
				if err := os.WriteFile(m(via), content, 0o644); err != nil {
					t.Fatal(err)
				}
			case 1:
				f, err := os.OpenFile(m(via), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.Write([]byte("+app"))
				f.Close()
				content = append(content, "+app"...)
			case 2:
				if err := os.Truncate(m(via), 5); err != nil {
					t.Fatal(err)
				}
				content = content[:5]
			}
			namesAgree(t, e, fmt.Sprintf("op %d via %s", i, via), content, names...)
		}
		e.AssertMatchesRescan()
	})
}

// RENAME_EXCHANGE of two names of one file succeeds and changes nothing.
func TestHardLinkExchangeOfTwoNamesOfOneFile(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e, a, b, content := hardLinkedBlob(t, mode, false)
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		want := map[string]string{a: "verified", b: "mismatch"}
		if !e.Server.Passthrough() {
			want = map[string]string{a: "ambiguous", b: "ambiguous"}
		}
		if err := unix.Renameat2(unix.AT_FDCWD, m(a), unix.AT_FDCWD, m(b), unix.RENAME_EXCHANGE); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{a, b} {
			if v, err := getx(t, m(p), trowfs.XattrStatus); err != nil || v != want[p] {
				t.Errorf("status via %s after exchange = %q, %v; want %s", p, v, err, want[p])
			}
		}
		namesAgree(t, e, "exchanged", content, a, b)
		e.AssertMatchesRescan()
	})
}

// rename of one name of a file over a different file: the file keeps two names.
func TestHardLinkRenameOverAnotherFile(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode})
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		os.WriteFile(m("a"), []byte("linked"), 0o644)
		os.Link(m("a"), m("b"))
		os.WriteFile(m("c"), []byte("other"), 0o644)
		f, err := os.Open(m("c")) // the replaced file stays open
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := os.Rename(m("b"), m("c")); err != nil {
			t.Fatal(err)
		}
		namesAgree(t, e, "b over c", []byte("linked"), "a", "c")
		if _, err := os.Stat(m("b")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("b after rename: %v", err)
		}
		e.AssertMatchesRescan()
	})
}

// Unlinking every name while a writer is open: the file has no name, fgetxattr has nothing, and
// the writes after the unlink are recorded nowhere.
func TestHardLinkUnlinkAllNamesWhileWriterOpen(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode})
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		os.WriteFile(m("a"), []byte("x"), 0o644)
		os.Link(m("a"), m("b"))
		os.Link(m("a"), m("c"))
		f, err := os.OpenFile(m("b"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"a", "b", "c"} {
			if err := os.Remove(m(n)); err != nil {
				t.Fatal(err)
			}
			f.Write([]byte("more"))
		}
		buf := make([]byte, 128)
		for _, attr := range []string{trowfs.XattrStatus, trowfs.XattrDigest} {
			if n, err := unix.Fgetxattr(int(f.Fd()), attr, buf); !errors.Is(err, unix.ENODATA) {
				t.Errorf("fgetxattr %s = %q, %v; want ENODATA", attr, buf[:max(n, 0)], err)
			}
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Nlink != 0 {
			t.Errorf("fstat after unlinking all: nlink %d, %v", st.Nlink, err)
		}
		f.Close()
		e.AssertMatchesRescan()
	})
}

// A writer open through one name while that name is unlinked: the other name keeps the file and
// the writes made after the unlink reach it.
func TestHardLinkWriterOutlivesItsName(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode})
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		os.WriteFile(m("a"), []byte("x"), 0o644)
		os.Link(m("a"), m("b"))
		f, err := os.OpenFile(m("a"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(m("a")); err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("after"))
		if err := f.Chmod(0o600); err != nil {
			t.Errorf("fchmod of a file that still has a name: %v", err)
		}
		if err := unix.Fsetxattr(int(f.Fd()), "user.kept", []byte("v"), 0); err != nil {
			t.Errorf("fsetxattr of a file that still has a name: %v", err)
		}
		f.Close()
		namesAgree(t, e, "a unlinked while open", []byte("xafter"), "b")
		e.AssertMatchesRescan()
	})
}

// Two writers through two names of one file at once; afterwards the tree equals a rescan.
func TestHardLinkConcurrentWritersThroughTwoNames(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode})
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		os.WriteFile(m("a"), nil, 0o644)
		os.Link(m("a"), m("b"))
		var wg sync.WaitGroup
		for i, n := range []string{"a", "b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 200; j++ {
					f, err := os.OpenFile(m(n), os.O_WRONLY|os.O_APPEND, 0)
					if err != nil {
						t.Error(err)
						return
					}
					f.Write(bytes.Repeat([]byte{'a' + byte(i)}, 100))
					f.Close()
				}
			}()
		}
		wg.Wait()
		got, _ := os.ReadFile(m("a"))
		if len(got) != 2*200*100 {
			t.Errorf("size %d, want %d: appends through two names lost data", len(got), 2*200*100)
		}
		namesAgree(t, e, "after concurrent appends", got, "a", "b")
		e.AssertMatchesRescan()
	})
}

// A writer whose name was unlinked while the file keeps another: its writes, once closed, show in
// the size another name's stat reports even when that name's attributes were cached meanwhile.
func TestHardLinkOrphanWriterCloseRefreshesOtherNames(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode})
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		os.WriteFile(m("a"), []byte("x"), 0o644)
		os.Link(m("a"), m("b"))
		f, err := os.OpenFile(m("a"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(m("a")); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(m("b")); err != nil || fi.Size() != 1 { // cached now
			t.Fatalf("stat b = %v, %v", fi, err)
		}
		f.Write([]byte("after"))
		f.Close()
		namesAgree(t, e, "writer of unlinked a closed", []byte("xafter"), "b")
		e.AssertMatchesRescan()
	})
}

// rename(2) of another file over one name of a hard-linked file drops its link count: the other
// name's stat must show it even when its attributes were cached.
func TestHardLinkRenameOverOneNameRefreshesTheOther(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode})
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		os.WriteFile(m("a"), []byte("linked"), 0o644)
		os.Link(m("a"), m("b"))
		os.WriteFile(m("u"), []byte("upload"), 0o644)
		for _, p := range []string{"a", "b"} {
			if _, err := os.Stat(m(p)); err != nil { // cached now
				t.Fatal(err)
			}
		}
		if err := os.Rename(m("u"), m("b")); err != nil {
			t.Fatal(err)
		}
		namesAgree(t, e, "u renamed over b", []byte("linked"), "a")
		namesAgree(t, e, "u renamed over b", []byte("upload"), "b")
		e.AssertMatchesRescan()
	})
}
