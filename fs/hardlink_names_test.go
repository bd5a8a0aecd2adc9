package fs_test

import (
	"github.com/trowfs/trowfs/fs/fstest"
	"golang.org/x/sys/unix"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	trowfs "github.com/trowfs/trowfs/fs"
)

// rename(2) of one name of a file onto another name of the same file succeeds and changes
// nothing: both names stay, each with its own state. With per-name nodes the kernel sends the
// rename (the names are different nodes) and moves the source node onto the target name; the
// source name, looked up again, must get a node of its own, not the one now serving the target.
func TestXattrPerNameAfterRenameOntoOwnHardLink(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		for _, dir := range []string{"a onto b", "b onto a"} {
			t.Run(dir, func(t *testing.T) {
				e, a, b, content := hardLinkedBlob(t, mode, false)
				m := func(p string) string { return filepath.Join(e.Mnt, p) }
				want := map[string]string{a: "verified", b: "mismatch"}
				if !e.Server.Passthrough() {
					want = map[string]string{a: "ambiguous", b: "ambiguous"}
				}
				from, to := a, b
				if dir == "b onto a" {
					from, to = b, a
				}
				// Both names known to the kernel, as a registry's stat before the rename makes them.
				for _, p := range []string{a, b} {
					if _, err := os.Stat(m(p)); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.Rename(m(from), m(to)); err != nil {
					t.Fatal(err)
				}
				var sts []syscall.Stat_t
				for _, p := range []string{to, from, to, from} {
					var st syscall.Stat_t
					if err := syscall.Stat(m(p), &st); err != nil {
						t.Fatalf("stat %s after the rename: %v", p, err)
					}
					sts = append(sts, st)
					if v, err := getx(t, m(p), trowfs.XattrStatus); err != nil || v != want[p] {
						t.Errorf("status via %s after renaming %s = %q, %v; want %s", p, dir, v, err, want[p])
					}
					if v, err := getx(t, m(p), trowfs.XattrDigest); err != nil || v != sha(content) {
						t.Errorf("digest via %s = %q, %v; want %s", p, v, err, sha(content))
					}
				}
				for _, st := range sts {
					if st.Ino != sts[0].Ino || st.Nlink != 2 {
						t.Errorf("st_ino %d nlink %d, want %d and 2", st.Ino, st.Nlink, sts[0].Ino)
					}
				}
				e.AssertMatchesRescan()
			})
		}
	})
}

// When a file's link count drops back to 1 while a descriptor holds the node of its remaining
// name, the kernel's next lookup of that name (after the entry timeout) must get the same node:
// a new one would leave the descriptor's node without a name, and fgetxattr through it would
// answer ENODATA for a file the tree has.
func TestHardLinkNodeSurvivesLinkCountDroppingToOne(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode, CacheTimeout: 50 * time.Millisecond})
		a, b := filepath.Join(e.Mnt, "a"), filepath.Join(e.Mnt, "b")
		if err := os.WriteFile(b, []byte("v1"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(b, a); err != nil { // a's node is made with two links
			t.Fatal(err)
		}
		f, err := os.OpenFile(a, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := os.Remove(b); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
		var st, fst syscall.Stat_t
		if err := syscall.Stat(a, &st); err != nil { // looked up again: one link now
			t.Fatal(err)
		}
		if err := syscall.Fstat(int(f.Fd()), &fst); err != nil || fst.Ino != st.Ino || fst.Nlink != 1 || st.Nlink != 1 {
			t.Errorf("stat ino %d nlink %d, fstat ino %d nlink %d (%v); want one inode, one link", st.Ino, st.Nlink, fst.Ino, fst.Nlink, err)
		}
		buf := make([]byte, 128)
		n, err := unix.Fgetxattr(int(f.Fd()), trowfs.XattrStatus, buf)
		if v, perr := getx(t, a, trowfs.XattrStatus); err != nil || perr != nil || string(buf[:max(n, 0)]) != v {
			t.Errorf("fgetxattr status = %q, %v; getxattr through the name = %q, %v", buf[:max(n, 0)], err, v, perr)
		}
		if _, err := f.Write([]byte("v2 through the descriptor")); err != nil {
			t.Fatal(err)
		}
		if err := f.Chmod(0o600); err != nil {
			t.Errorf("fchmod: %v", err)
		}
		f.Close()
		e.AssertMatchesRescan()
	})
}

// What the API serves for a name (Tracker.State, also behind .state) and the attributes read
// through that name agree for every name, after each change of the set of names.
func TestHardLinkAPIAndXattrAgreePerName(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e, a, b, _ := hardLinkedBlob(t, mode, false)
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		c := "c-outside-blobs"
		agree := func(when string, names ...string) {
			t.Helper()
			e.Settle()
			var statuses []string
			for _, rel := range names {
				st, ok := e.Tracker.State(rel)
				if !ok {
					t.Fatalf("%s: API has no %s", when, rel)
				}
				statuses = append(statuses, st.Status)
				v, err := getx(t, m(rel), trowfs.XattrStatus)
				d, derr := getx(t, m(rel), trowfs.XattrDigest)
				if err != nil || derr != nil || d != st.Digest {
					t.Errorf("%s: %s digest xattr %q (%v), API %q", when, rel, d, derr, st.Digest)
				}
				if e.Server.Passthrough() && v != st.Status {
					t.Errorf("%s: %s status xattr %q (%v), API %q", when, rel, v, err, st.Status)
				}
			}
			if !e.Server.Passthrough() {
				want := statuses[0]
				for _, s := range statuses {
					if s != want {
						want = "ambiguous"
					}
				}
				for _, rel := range names {
					if v, err := getx(t, m(rel), trowfs.XattrStatus); err != nil || v != want {
						t.Errorf("%s: one node per file: status via %s = %q, %v; want %s", when, rel, v, err, want)
					}
				}
			}
		}
		agree("two names", a, b)
		if err := os.Link(m(b), m(c)); err != nil {
			t.Fatal(err)
		}
		agree("three names", a, b, c)
		if err := os.Remove(m(a)); err != nil {
			t.Fatal(err)
		}
		agree("a removed", b, c)
		if err := os.Rename(m(c), m(a)); err != nil {
			t.Fatal(err)
		}
		agree("c renamed to a", a, b)
		e.AssertMatchesRescan()
	})
}
