package fs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	trowfs "github.com/trowfs/trowfs/fs"
	"github.com/trowfs/trowfs/fs/fstest"
)

// Forged user.trowfs.* copies on a directory, a symlink (trusted.*, as user.* is refused on
// symlinks) and next to .state are never served; look-alike names are ordinary attributes; listxattr
// sizes and ERANGE behave as natively.
func TestXattrForgeryOnEveryKind(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	m := func(p string) string { return filepath.Join(e.Mnt, p) }
	d := func(p string) string { return filepath.Join(e.Data, p) }
	if err := os.Mkdir(m("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m("dir/f"), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", m("dir/l")); err != nil {
		t.Fatal(err)
	}
	e.Settle()
	forge(t, d("dir"))
	forge(t, d("dir/f"))
	for _, a := range []string{"trusted.trowfs.status", "trusted.trowfs.digest"} {
		if err := unix.Lsetxattr(d("dir/l"), a, []byte("verified"), 0); err != nil {
			t.Fatal(err)
		}
	}
	lookalikes := map[string]string{"user.trowfs": "a", "user.TROWFS.status": "b", "user.trowfsx": "c", "trusted.trowfs.status": "d"}
	for a, v := range lookalikes {
		if err := unix.Lsetxattr(d("dir/f"), a, []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	}
	dirState := e.ReadState("dir")
	if v, err := getx(t, m("dir"), trowfs.XattrDigest); err != nil || v != dirState["digest"] {
		t.Errorf("digest of dir = %q, %v; .state says %v", v, err, dirState["digest"])
	}
	if v, err := getx(t, m("dir"), trowfs.XattrStatus); err != nil || v != dirState["status"] {
		t.Errorf("status of dir = %q, %v; .state says %v", v, err, dirState["status"])
	}
	buf := make([]byte, 256)
	// The kernel answers user.* on a symlink itself (ENODATA): neither the tree nor a copy.
	if n, err := unix.Lgetxattr(m("dir/l"), trowfs.XattrStatus, buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("lgetxattr status of symlink = %q, %v; want ENODATA", buf[:max(n, 0)], err)
	}
	if n, err := unix.Lgetxattr(m("dir/l"), "trusted.trowfs.status", buf); err != nil || string(buf[:n]) != "verified" {
		t.Errorf("trusted.trowfs.status is not trowfs's, it passes through: %q, %v", buf[:max(n, 0)], err)
	}
	for _, a := range []string{trowfs.XattrStatus, trowfs.XattrDigest, "user.anything"} {
		if n, err := unix.Getxattr(m("dir/.state"), a, buf); !errors.Is(err, unix.ENODATA) {
			t.Errorf("getxattr %s of .state = %q, %v; want ENODATA", a, buf[:max(n, 0)], err)
		}
	}
	for a, v := range lookalikes {
		if got, err := getx(t, m("dir/f"), a); err != nil || got != v {
			t.Errorf("%s through the mount = %q, %v; want the backing %q", a, got, err, v)
		}
	}
	// listxattr: size query, exact-size buffer, one byte short.
	want := []string{}
	for _, n := range listx(t, d("dir/f")) {
		if !strings.HasPrefix(n, "user.trowfs.") {
			want = append(want, n)
		}
	}
	size := len(strings.Join(want, "\x00")) + 1
	if n, err := unix.Listxattr(m("dir/f"), nil); err != nil || n != size {
		t.Errorf("listxattr size query = %d, %v; want %d", n, err, size)
	}
	exact := make([]byte, size)
	if n, err := unix.Listxattr(m("dir/f"), exact); err != nil || n != size {
		t.Errorf("listxattr exact buffer = %d, %v; want %d", n, err, size)
	}
	if _, err := unix.Listxattr(m("dir/f"), make([]byte, size-1)); !errors.Is(err, syscall.ERANGE) {
		t.Errorf("listxattr one byte short: %v, want ERANGE", err)
	}
	// A file whose only backing attributes are forged copies lists nothing.
	if n, err := unix.Listxattr(m("dir"), nil); err != nil || n != 0 {
		t.Errorf("listxattr size of dir with only forged copies = %d, %v; want 0", n, err)
	}
	// getxattr ERANGE like native: one byte short of the digest.
	dig := []byte(sha([]byte("content")))
	if _, err := unix.Getxattr(m("dir/f"), trowfs.XattrDigest, make([]byte, len(dig)-1)); !errors.Is(err, syscall.ERANGE) {
		t.Errorf("getxattr digest one byte short: %v, want ERANGE", err)
	}
	if n, err := unix.Getxattr(m("dir/f"), trowfs.XattrDigest, nil); err != nil || n != len(dig) {
		t.Errorf("getxattr digest size query = %d, %v; want %d", n, err, len(dig))
	}
	for _, a := range []string{trowfs.XattrStatus, "user.trowfs.new"} {
		if err := unix.Lsetxattr(m("dir/l"), a, []byte("x"), 0); !errors.Is(err, syscall.EPERM) {
			t.Errorf("setxattr %s on a symlink: %v, want EPERM", a, err)
		}
		if err := unix.Setxattr(m("dir"), a, []byte("x"), 0); !errors.Is(err, syscall.EPERM) {
			t.Errorf("setxattr %s on a directory: %v, want EPERM", a, err)
		}
	}
	e.AssertMatchesRescan()
}
