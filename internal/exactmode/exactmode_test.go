package exactmode

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Do creates with exactly the mode asked for while the process keeps its umask.
func TestDoIgnoresTheProcessUmaskAndLeavesIt(t *testing.T) {
	if !Available() {
		t.Fatal("unshare(CLONE_FS) refused: creates through the mount would be masked twice")
	}
	old := unix.Umask(0o027)
	defer func() { unix.Umask(old); Refresh() }()
	Refresh()
	dir := t.TempDir()
	var inside int
	Do(0o777, func() {
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

// Every permission mode comes out exactly as asked under any process umask, whether Do runs the
// create in place (the umask leaves the mode alone) or on a umask-0 thread.
func TestDoGivesEveryModeExactlyUnderAnyUmask(t *testing.T) {
	if !Available() {
		t.Fatal("unshare(CLONE_FS) refused")
	}
	for _, um := range []int{0, 0o022, 0o027, 0o077, 0o777} {
		old := unix.Umask(um)
		Refresh()
		dir := t.TempDir()
		for mode := uint32(0); mode <= 0o777; mode++ {
			f, d := filepath.Join(dir, fmt.Sprintf("f%o", mode)), filepath.Join(dir, fmt.Sprintf("d%o", mode))
			var ferr, derr error
			Do(mode, func() {
				var fd int
				if fd, ferr = unix.Open(f, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, mode); ferr == nil {
					unix.Close(fd)
				}
				derr = unix.Mkdir(d, mode)
			})
			if ferr != nil || derr != nil {
				t.Fatalf("umask %03o mode %03o: %v, %v", um, mode, ferr, derr)
			}
			for _, p := range []string{f, d} {
				var st unix.Stat_t
				if err := unix.Lstat(p, &st); err != nil {
					t.Fatal(err)
				}
				if got := st.Mode & 0o777; got != mode {
					t.Fatalf("umask %03o: %s created with %03o, want %03o", um, filepath.Base(p), got, mode)
				}
			}
			_ = unix.Chmod(d, 0o700) // so that TempDir's cleanup can remove it
		}
		if now := unix.Umask(old); now != um {
			t.Fatalf("the process umask became %03o inside, want %03o", now, um)
		}
		Refresh()
	}
}

// A create whose mode the umask leaves alone runs on the caller's own thread: no thread switch.
func TestDoRunsInPlaceWhenTheUmaskLeavesTheModeAlone(t *testing.T) {
	if !Available() {
		t.Fatal("unshare(CLONE_FS) refused")
	}
	old := unix.Umask(0o022)
	defer func() { unix.Umask(old); Refresh() }()
	Refresh()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	me := unix.Gettid()
	for _, c := range []struct {
		mode    uint32
		inPlace bool
	}{{0o644, true}, {0o755, true}, {0o600, true}, {0o664, false}, {0o777, false}} {
		var tid int
		Do(c.mode, func() { tid = unix.Gettid() })
		if (tid == me) != c.inPlace {
			t.Errorf("mode %03o under umask 022: ran in place %v, want %v", c.mode, tid == me, c.inPlace)
		}
	}
}
