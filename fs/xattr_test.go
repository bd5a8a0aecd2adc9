package fs_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	trowfs "github.com/trowfs/trowfs/fs"
	"github.com/trowfs/trowfs/fs/fstest"
	"github.com/trowfs/trowfs/registry"
)

// getx reads an extended attribute through path; "" and the error when there is none.
func getx(t *testing.T, path, attr string) (string, error) {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Getxattr(path, attr, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func listx(t *testing.T, path string) []string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Listxattr(path, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", path, err)
	}
	return strings.FieldsFunc(string(buf[:n]), func(r rune) bool { return r == 0 })
}

const forgedDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

// forge plants user.trowfs.* attributes on a backing file, as anyone who can write DATA can.
func forge(t *testing.T, backing string) {
	t.Helper()
	for attr, v := range map[string]string{trowfs.XattrStatus: "verified", trowfs.XattrDigest: forgedDigest, "user.trowfs.extra": "x"} {
		if err := unix.Lsetxattr(backing, attr, []byte(v), 0); err != nil {
			t.Fatalf("forge %s on %s: %v", attr, backing, err)
		}
	}
}

// The user.trowfs. namespace comes from the tree or not at all: a forged copy on the backing file
// is never served, listed, replaced or removed through the mount; other attributes pass through.
func TestXattrIgnoresForgedBackingCopy(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{BlobDigest: registry.TrowSQLite.BlobDigest})
	m := func(p string) string { return filepath.Join(e.Mnt, p) }
	d := func(p string) string { return filepath.Join(e.Data, p) }
	if err := os.Mkdir(m("blobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	content := []byte("not what the name says")
	wrong := "blobs/" + strings.Replace(forgedDigest, "sha256:0", "sha256:1", 1)
	if err := os.WriteFile(m(wrong), content, 0o644); err != nil {
		t.Fatal(err)
	}
	e.Settle()
	forge(t, d(wrong))

	t.Run("tracked file", func(t *testing.T) {
		if v, err := getx(t, m(wrong), trowfs.XattrStatus); err != nil || v != "mismatch" {
			t.Errorf("status through the mount = %q, %v; want mismatch from the tree", v, err)
		}
		if v, err := getx(t, m(wrong), trowfs.XattrDigest); err != nil || v != sha(content) {
			t.Errorf("digest through the mount = %q, %v; want %s", v, err, sha(content))
		}
		if _, err := getx(t, m(wrong), "user.trowfs.extra"); !errors.Is(err, unix.ENODATA) {
			t.Errorf("backing user.trowfs.extra through the mount: %v, want ENODATA", err)
		}
	})

	t.Run("added behind the mount", func(t *testing.T) {
		if err := os.WriteFile(d("blobs/behind"), content, 0o644); err != nil {
			t.Fatal(err)
		}
		forge(t, d("blobs/behind"))
		for _, attr := range []string{trowfs.XattrStatus, trowfs.XattrDigest} {
			if v, err := getx(t, m("blobs/behind"), attr); !errors.Is(err, unix.ENODATA) {
				t.Errorf("%s of a file the tree does not have = %q, %v; want ENODATA", attr, v, err)
			}
		}
		if err := os.Remove(d("blobs/behind")); err != nil { // keep the rescan comparison about the mount
			t.Fatal(err)
		}
	})

	t.Run("unlinked while open", func(t *testing.T) {
		if err := os.WriteFile(m("gone"), content, 0o644); err != nil {
			t.Fatal(err)
		}
		e.Settle()
		forge(t, d("gone"))
		f, err := os.Open(m("gone"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := os.Remove(m("gone")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 256)
		for _, attr := range []string{trowfs.XattrStatus, trowfs.XattrDigest} {
			if n, err := unix.Fgetxattr(int(f.Fd()), attr, buf); !errors.Is(err, unix.ENODATA) {
				t.Errorf("%s of an unlinked file = %q, %v; want ENODATA", attr, buf[:max(n, 0)], err)
			}
		}
	})

	t.Run("listxattr", func(t *testing.T) {
		if err := unix.Setxattr(m(wrong), "user.registry", []byte("kept"), 0); err != nil {
			t.Fatal(err)
		}
		names := listx(t, m(wrong))
		for _, n := range names {
			if strings.HasPrefix(n, "user.trowfs.") {
				t.Errorf("listxattr through the mount lists %s (backing copy)", n)
			}
		}
		if !slices.Contains(names, "user.registry") {
			t.Errorf("listxattr through the mount = %v, lacks user.registry", names)
		}
		// The size query must agree with the list.
		n, err := unix.Listxattr(m(wrong), nil)
		if err != nil || n != len(strings.Join(names, "\x00"))+1 {
			t.Errorf("listxattr size = %d, %v; list is %v", n, err, names)
		}
	})

	t.Run("set and remove refused", func(t *testing.T) {
		for _, attr := range []string{trowfs.XattrStatus, trowfs.XattrDigest, "user.trowfs.extra", "user.trowfs.new"} {
			if err := unix.Setxattr(m(wrong), attr, []byte("verified"), 0); !errors.Is(err, syscall.EPERM) {
				t.Errorf("setxattr %s through the mount: %v, want EPERM", attr, err)
			}
			if err := unix.Removexattr(m(wrong), attr); !errors.Is(err, syscall.EPERM) {
				t.Errorf("removexattr %s through the mount: %v, want EPERM", attr, err)
			}
		}
		if v, err := getx(t, d(wrong), trowfs.XattrStatus); err != nil || v != "verified" {
			t.Errorf("backing status after refused calls = %q, %v; want the planted value untouched", v, err)
		}
		if _, err := getx(t, d(wrong), "user.trowfs.new"); !errors.Is(err, unix.ENODATA) {
			t.Errorf("a refused setxattr reached the backing file: %v", err)
		}
	})

	t.Run("others pass through", func(t *testing.T) {
		if err := unix.Setxattr(m(wrong), "user.other", []byte("v1"), 0); err != nil {
			t.Fatal(err)
		}
		if v, err := getx(t, d(wrong), "user.other"); err != nil || v != "v1" {
			t.Errorf("backing user.other = %q, %v", v, err)
		}
		if v, err := getx(t, m(wrong), "user.other"); err != nil || v != "v1" {
			t.Errorf("user.other through the mount = %q, %v", v, err)
		}
		if err := unix.Removexattr(m(wrong), "user.other"); err != nil {
			t.Fatal(err)
		}
		if _, err := getx(t, d(wrong), "user.other"); !errors.Is(err, unix.ENODATA) {
			t.Errorf("removexattr did not reach the backing file: %v", err)
		}
	})
	e.AssertMatchesRescan()
}

// hardLinkedBlob makes blob A (content matching its name) and, as a hard link to it, blob name B
// (content not matching B): through the mount, or in DATA before the mount.
func hardLinkedBlob(t *testing.T, mode string, behind bool) (e *fstest.Env, a, b string, content []byte) {
	t.Helper()
	content = []byte("layer bytes of A")
	a = "blobs/" + sha(content)
	b = "blobs/" + strings.Replace(forgedDigest, "sha256:0", "sha256:b", 1)
	o := fstest.Options{WriteMode: mode, BlobDigest: registry.TrowSQLite.BlobDigest}
	root := t.TempDir()
	if behind {
		o.Data = root
		if err := os.Mkdir(filepath.Join(root, "blobs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, a), content, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(root, a), filepath.Join(root, b)); err != nil {
			t.Fatal(err)
		}
	}
	e = fstest.Mount(t, o)
	if !behind {
		if err := os.Mkdir(filepath.Join(e.Mnt, "blobs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.Mnt, a), content, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(e.Mnt, a), filepath.Join(e.Mnt, b)); err != nil {
			t.Fatal(err)
		}
	}
	e.Settle()
	return e, a, b, content
}

// With kernel passthrough each name has its own node and getxattr describes the name it was asked
// through; without it the node is the inode, and names that disagree report "ambiguous".
func TestXattrDescribesTheNameOfAHardLink(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		for _, behind := range []bool{false, true} {
			name := "through the mount"
			if behind {
				name = "behind the mount"
			}
			t.Run(name, func(t *testing.T) {
				e, a, b, content := hardLinkedBlob(t, mode, behind)
				perName := e.Server.Passthrough()
				wantA, wantB := "verified", "mismatch"
				if !perName {
					wantA, wantB = "ambiguous", "ambiguous"
				}
				check := func(when, rel, want string) {
					t.Helper()
					if st, ok := e.Tracker.Entry(rel); !ok {
						t.Fatalf("%s: tree has no %s", when, rel)
					} else if rel == b && st.Status.String() != "mismatch" {
						t.Fatalf("%s: tree says %s for %s, want mismatch", when, st.Status, rel)
					}
					p := filepath.Join(e.Mnt, rel)
					if v, err := getx(t, p, trowfs.XattrStatus); err != nil || v != want {
						t.Errorf("%s: status via %s = %q, %v; want %s", when, rel, v, err, want)
					}
					if v, err := getx(t, p, trowfs.XattrDigest); err != nil || v != sha(content) {
						t.Errorf("%s: digest via %s = %q, %v; want %s", when, rel, v, err, sha(content))
					}
				}
				// Ask B first, then A, then B again: the answer must not follow the last lookup.
				check("linked", b, wantB)
				check("linked", a, wantA)
				check("linked", b, wantB)
				var sa, sb syscall.Stat_t
				if err := syscall.Stat(filepath.Join(e.Mnt, a), &sa); err != nil {
					t.Fatal(err)
				}
				if err := syscall.Stat(filepath.Join(e.Mnt, b), &sb); err != nil {
					t.Fatal(err)
				}
				if sa.Ino != sb.Ino || sa.Nlink != 2 || sb.Nlink != 2 {
					t.Errorf("st_ino %d/%d nlink %d/%d: want one inode with 2 links", sa.Ino, sb.Ino, sa.Nlink, sb.Nlink)
				}
				// Unlink B: A is the only name, and verified in every mode.
				if err := os.Remove(filepath.Join(e.Mnt, b)); err != nil {
					t.Fatal(err)
				}
				check("B unlinked", a, "verified")
				if err := syscall.Stat(filepath.Join(e.Mnt, a), &sa); err != nil || sa.Nlink != 1 {
					t.Errorf("nlink of A after unlinking B = %d, %v; want 1", sa.Nlink, err)
				}
				// Link B again and unlink A: B alone is a mismatch.
				if err := os.Link(filepath.Join(e.Mnt, a), filepath.Join(e.Mnt, b)); err != nil {
					t.Fatal(err)
				}
				e.Settle()
				if err := os.Remove(filepath.Join(e.Mnt, a)); err != nil {
					t.Fatal(err)
				}
				check("A unlinked", b, "mismatch")
				e.AssertMatchesRescan()
			})
		}
	})
}

// Per-name nodes must not split the kernel's caches: a change through one name is seen through
// the other at once (size, content, mode, link count), and st_ino stays the same.
func TestHardLinkCachesCoherentAcrossNames(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode})
		a, b := filepath.Join(e.Mnt, "a"), filepath.Join(e.Mnt, "b")
		if err := os.WriteFile(a, []byte("v1"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(a, b); err != nil {
			t.Fatal(err)
		}
		agree := func(when string, want []byte, wantMode os.FileMode) {
			t.Helper()
			for _, p := range []string{a, b} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatalf("%s: %v", when, err)
				}
				if fi.Size() != int64(len(want)) || fi.Mode().Perm() != wantMode {
					t.Errorf("%s: stat %s size %d mode %v, want %d %v", when, filepath.Base(p), fi.Size(), fi.Mode().Perm(), len(want), wantMode)
				}
				if got, err := os.ReadFile(p); err != nil || string(got) != string(want) {
					t.Errorf("%s: read %s = %q, %v; want %q", when, filepath.Base(p), got, err, want)
				}
			}
		}
		agree("linked", []byte("v1"), 0o644)
		for i, w := range []struct{ via, content string }{{a, "version two, longer"}, {b, "v3"}, {a, "and a fourth, longer again"}} {
			if err := os.WriteFile(w.via, []byte(w.content), 0o644); err != nil {
				t.Fatal(err)
			}
			agree(fmt.Sprintf("write %d via %s", i, filepath.Base(w.via)), []byte(w.content), 0o644)
		}
		if err := os.Truncate(b, 3); err != nil {
			t.Fatal(err)
		}
		agree("truncate via b", []byte("and"), 0o644)
		f, err := os.OpenFile(a, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(" more")); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		agree("append+fsync via a, still open", []byte("and more"), 0o644)
		f.Close()
		if err := os.Chmod(a, 0o600); err != nil {
			t.Fatal(err)
		}
		agree("chmod via a", []byte("and more"), 0o600)
		c := filepath.Join(e.Mnt, "c")
		if err := os.Link(b, c); err != nil {
			t.Fatal(err)
		}
		var sts [3]syscall.Stat_t
		for i, p := range []string{a, b, c} {
			if err := syscall.Stat(p, &sts[i]); err != nil {
				t.Fatal(err)
			}
			if sts[i].Nlink != 3 || sts[i].Ino != sts[0].Ino {
				t.Errorf("after linking c: %s ino %d nlink %d, want ino %d nlink 3", filepath.Base(p), sts[i].Ino, sts[i].Nlink, sts[0].Ino)
			}
		}
		if err := os.Remove(c); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{a, b} {
			var st syscall.Stat_t
			if err := syscall.Stat(p, &st); err != nil || st.Nlink != 2 {
				t.Errorf("after unlinking c: %s nlink %d, %v; want 2", filepath.Base(p), st.Nlink, err)
			}
		}
		e.AssertMatchesRescan()
	})
}
