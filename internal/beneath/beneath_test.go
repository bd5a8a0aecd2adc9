package beneath

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// both runs a test with openat2 and with the component-by-component fallback older kernels get:
// the two must refuse the same things.
func both(t *testing.T, f func(t *testing.T)) {
	t.Run("openat2", f)
	t.Run("steps", func(t *testing.T) {
		noOpenat2.Store(true)
		defer noOpenat2.Store(false)
		f(t)
	})
}

func rootFd(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func TestOpenRefusesEverySymlinkAndEscape(t *testing.T) {
	both(t, func(t *testing.T) {
		root, out := t.TempDir(), t.TempDir()
		must(t, os.MkdirAll(filepath.Join(root, "real/sub"), 0o755))
		must(t, os.WriteFile(filepath.Join(root, "real/sub/f"), []byte("in"), 0o644))
		must(t, os.WriteFile(filepath.Join(out, "secret"), []byte("out"), 0o644))
		must(t, os.Symlink("real", filepath.Join(root, "inlink")))      // to a directory inside
		must(t, os.Symlink(out, filepath.Join(root, "outlink")))        // to one outside
		must(t, os.Symlink("sub/f", filepath.Join(root, "real/flink"))) // a final link
		fd := rootFd(t, root)

		got, err := Open(fd, "real/sub/f", unix.O_RDONLY)
		if err != nil {
			t.Fatalf("plain path: %v", err)
		}
		unix.Close(got)
		for _, rel := range []string{"inlink/sub/f", "outlink/secret", "real/flink", "../" + filepath.Base(out) + "/secret", "real/../../x", "/etc/passwd"} {
			if got, err := Open(fd, rel, unix.O_RDONLY); err == nil {
				unix.Close(got)
				t.Errorf("%s: opened, want a refusal", rel)
			} else if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.EXDEV) {
				t.Errorf("%s: %v, want ELOOP, ENOTDIR or EXDEV", rel, err)
			}
		}
		var st unix.Stat_t
		if err := Lstat(fd, "real/flink", &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
			t.Errorf("Lstat of a final link: %v, mode %o; want the link itself", err, st.Mode)
		}
		buf := make([]byte, 256)
		if n, err := Readlink(fd, "real/flink", buf); err != nil || string(buf[:n]) != "sub/f" {
			t.Errorf("Readlink: %q, %v", buf[:n], err)
		}
		if _, err := Readlink(fd, "outlink/x", buf); err == nil {
			t.Error("Readlink through a link to outside DATA succeeded")
		}
	})
}

// A path longer than PATH_MAX resolves in steps, with the same refusals in every step.
func TestOpenDeepPathsBeyondPathMax(t *testing.T) {
	both(t, func(t *testing.T) {
		root := t.TempDir()
		fd := rootFd(t, root)
		name := strings.Repeat("d", 250)
		dfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY, 0)
		must(t, err)
		var rel []string
		for i := 0; i < 20; i++ { // about 5,000 bytes
			must(t, unix.Mkdirat(dfd, name, 0o755))
			next, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_DIRECTORY, 0)
			must(t, err)
			unix.Close(dfd)
			dfd = next
			rel = append(rel, name)
		}
		f, err := unix.Openat(dfd, "f", unix.O_CREAT|unix.O_WRONLY, 0o644)
		must(t, err)
		unix.Close(f)
		must(t, unix.Symlinkat("/etc", dfd, "esc"))
		unix.Close(dfd)
		deep := strings.Join(rel, "/")
		if len(deep) <= unix.PathMax {
			t.Fatalf("path of %d bytes is not deep enough", len(deep))
		}
		got, err := Open(fd, deep+"/f", unix.O_RDONLY)
		if err != nil {
			t.Fatalf("deep open: %v", err)
		}
		unix.Close(got)
		if got, err := Open(fd, deep+"/esc/passwd", unix.O_RDONLY); err == nil {
			unix.Close(got)
			t.Fatal("followed a symlink at depth")
		}
		c, err := OpenMode(fd, deep+"/new", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o600)
		if err != nil {
			t.Fatalf("deep create: %v", err)
		}
		var st unix.Stat_t
		must(t, unix.Fstat(c, &st))
		unix.Close(c)
		if st.Mode&0o777 != 0o600&^uint32(umask()) {
			t.Errorf("created with mode %o", st.Mode&0o777)
		}
	})
}

func umask() int { m := unix.Umask(0); unix.Umask(m); return m }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
