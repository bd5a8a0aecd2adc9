package exactmode

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Do creates with exactly the mode asked for while the process keeps its umask.
func TestDoIgnoresTheProcessUmaskAndLeavesIt(t *testing.T) {
	if !Available() {
		t.Fatal("unshare(CLONE_FS) refused: creates through the mount would be masked twice")
	}
	old := unix.Umask(0o027)
	defer unix.Umask(old)
	dir := t.TempDir()
	var inside int
	Do(func() {
		inside = unix.Umask(0)
		if fd, err := unix.Open(filepath.Join(dir, "f"), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o666); err == nil {
			unix.Close(fd)
		}
		_ = unix.Mkdir(filepath.Join(dir, "d"), 0o777)
	})
	if inside != 0 {
		t.Errorf("umask inside Do %03o, want 0", inside)
	}
	for name, want := range map[string]os.FileMode{"f": 0o666, "d": 0o777} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s created with %03o, want %03o", name, got, want)
		}
	}
	if now := unix.Umask(0o027); now != 0o027 {
		t.Errorf("the process umask became %03o", now)
	}
	// Outside Do the process umask applies as always.
	if err := os.WriteFile(filepath.Join(dir, "g"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "g")); st.Mode().Perm() != 0o640 {
		t.Errorf("a create outside Do got %03o, want 0640 under umask 027", st.Mode().Perm())
	}
}
