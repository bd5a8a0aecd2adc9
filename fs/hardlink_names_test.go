package fs_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

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
