package fs_test

import (
	"errors"
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
