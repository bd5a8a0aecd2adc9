package tracker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/hashtree"
)

// makeDeep builds levels directories of 200-byte names under root with mkdirat from the
// parent's descriptor (mkdir with the whole path fails past PATH_MAX), writes files into the
// deepest one and returns its path relative to root.
func makeDeep(t *testing.T, root string, levels int, files map[string]string) string {
	t.Helper()
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for i := 0; i < levels; i++ {
		name := strings.Repeat(string(rune('a'+i%26)), 200)
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
		segs = append(segs, name)
	}
	defer unix.Close(fd)
	for name, body := range files {
		f, err := unix.Openat(fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Write(f, []byte(body)); err != nil {
			t.Fatal(err)
		}
		unix.Close(f)
	}
	return strings.Join(segs, "/")
}

// A tree deeper than PATH_MAX, made in DATA directly: the mount-time reconcile hashes and
// records its files as verified, a rescan equals the inline tree, and a full verification
// confirms them without findings.
func TestDeepTreeBeyondPathMaxIsScannedHashedAndVerified(t *testing.T) {
	data := t.TempDir()
	deep := makeDeep(t, data, 42, map[string]string{"f1": "first", "f2": "second file"})
	if len(deep) <= 8<<10 {
		t.Fatalf("deep path is only %d bytes", len(deep))
	}
	tr := newTracker(t, data)
	defer tr.Close()
	rep, err := tr.Load(context.Background(), VerifyQuick)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 2 {
		t.Errorf("load counted %d files, want 2", rep.Files)
	}
	assertEqualsRescan(t, tr)
	for _, n := range []string{"f1", "f2"} {
		if e, ok := tr.Entry(deep + "/" + n); !ok || e.Status != hashtree.StatusVerified {
			t.Errorf("%s at depth 42: %+v (present %v), want verified", n, e, ok)
		}
	}
	r, err := tr.StartVerify(RunFull, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Wait()
	v := r.View()
	if v.State != "done" || v.FilesDone != 2 || len(v.Findings) > 0 {
		t.Errorf("full verification: state %s, %d files, findings %+v", v.State, v.FilesDone, v.Findings)
	}
	for _, f := range tr.Findings("") {
		t.Errorf("finding: %+v", f)
	}
	ref, err := Rescan(context.Background(), data, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := ref.Summary(""); s.Files != 2 {
		t.Errorf("rescan counted %d files, want 2", s.Files)
	}
}

// OpenBeneath keeps RESOLVE_BENEATH and no-symlink-following at any depth: a deep path through
// a symlinked directory, or ending in a symlink, is refused, even when the link points inside.
func TestOpenBeneathDeepRefusesSymlinks(t *testing.T) {
	data := t.TempDir()
	deep := makeDeep(t, data, 42, map[string]string{"f": "x"})
	root, err := unix.Open(data, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	fd, err := OpenBeneath(root, deep+"/f", unix.O_RDONLY)
	if err != nil {
		t.Fatalf("deep file: %v", err)
	}
	unix.Close(fd)
	// Replace the top directory's path by a symlink to it, and add a final symlink.
	top, rest, _ := strings.Cut(deep, "/")
	if err := unix.Symlinkat(top, root, "link"); err != nil {
		t.Fatal(err)
	}
	if fd, err := OpenBeneath(root, "link/"+rest+"/f", unix.O_RDONLY); err == nil {
		unix.Close(fd)
		t.Error("a deep path through a symlinked directory was followed")
	}
	parent, _, err := walkParent(root, deep+"/f")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Symlinkat("/etc/passwd", parent, "out"); err != nil {
		t.Fatal(err)
	}
	unix.Close(parent)
	if fd, err := OpenBeneath(root, deep+"/out", unix.O_RDONLY); err == nil {
		unix.Close(fd)
		t.Error("a final symlink at depth was followed out of DATA")
	}
}

// A path whose directory is a symlink (even to a directory inside DATA) is refused at any
// depth, as OpenBeneath documents: short paths and deep ones resolve the same way, so a file
// reached only through a link is never hashed or verified under the link's name.
func TestOpenBeneathRefusesSymlinkedDirectoryInAShortPath(t *testing.T) {
	data := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "real", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(data, "link")); err != nil {
		t.Fatal(err)
	}
	root, err := unix.Open(data, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	fd, err := OpenBeneath(root, "real/f", unix.O_RDONLY)
	if err != nil {
		t.Fatalf("real/f: %v", err)
	}
	unix.Close(fd)
	if fd, err := OpenBeneath(root, "link/f", unix.O_RDONLY); err == nil {
		unix.Close(fd)
		t.Error("link/f was opened through the symlinked directory link")
	}
	var st unix.Stat_t
	if err := lstatBeneath(root, "link/f", &st); err == nil {
		t.Error("lstat of link/f went through the symlinked directory link")
	}
	// A directory symlink out of DATA: not even its files' metadata is read.
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(data, "out")); err != nil {
		t.Fatal(err)
	}
	if err := lstatBeneath(root, "out/secret", &st); err == nil {
		t.Error("lstat of out/secret went through a symlink out of DATA")
	}
	if err := unix.Symlink("/etc", filepath.Join(outside, "etc-link")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	if _, err := readlinkBeneath(root, "out/etc-link", buf); err == nil {
		t.Error("readlink of out/etc-link went through a symlink out of DATA")
	}
	// The link itself is still there to be described.
	if err := lstatBeneath(root, "link", &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("lstat of the link itself: %v, mode %o", err, st.Mode)
	}
	if fd, err := OpenBeneath(root, "link", unix.O_PATH|unix.O_NOFOLLOW); err != nil {
		t.Errorf("O_PATH open of the link itself: %v", err)
	} else {
		unix.Close(fd)
	}
}
