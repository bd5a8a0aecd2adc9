package fs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/fs/fstest"
)

// Deep trees: native ext4 accepts any relative path shorter than PATH_MAX from a directory
// descriptor, however deep that directory is. Through the mount every operation must do the same,
// with the errno native gives, and the tree must follow: the daemon's own path to the object (DATA
// plus the whole path below it) is far longer than PATH_MAX here.
func TestDeepTreeOpsMatchNative(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	native := t.TempDir()
	if err := os.Mkdir(filepath.Join(e.Mnt, "top"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(native, "top"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := deepOps(t, filepath.Join(native, "top"))
	got := deepOps(t, filepath.Join(e.Mnt, "top"))
	bad := 0
	for i := range max(len(want), len(got)) {
		if bad == 20 {
			t.Errorf("... and more")
			break
		}
		w, g := "(none)", "(none)"
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			bad++
			t.Errorf("step %d: native %s, through the mount %s", i, w, g)
		}
	}
	e.AssertMatchesRescan()
}

// deepOps builds the same deep tree below top and runs every operation in it, relative to
// directory descriptors, recording each result as "op: errno" (or "op: ok" and what it saw).
func deepOps(t *testing.T, top string) []string {
	t.Helper()
	var log []string
	rec := func(op string, err error) bool {
		s := "ok"
		if err != nil {
			s = errnoName(err)
		}
		log = append(log, op+": "+s)
		return err == nil
	}
	base, err := unix.Open(top, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Every directory descriptor stays open until the end, so an early return leaves none open
	// in the mount (which would keep it from unmounting).
	dirs := []int{base}
	defer func() {
		for _, fd := range dirs {
			unix.Close(fd)
		}
	}()

	// 15 directories of 255-byte names: a relative path of 3,840 bytes, and 4,095 (PATH_MAX less
	// its NUL) with one more 255-byte name.
	var comps []string
	for i := range 15 {
		comps = append(comps, strings.Repeat(string(rune('a'+i)), 255))
	}
	long := strings.Join(comps, "/")
	dir := base
	for _, c := range comps {
		if !rec("mkdir level", unix.Mkdirat(dir, c, 0o755)) {
			return log
		}
		fd, err := unix.Openat(dir, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if !rec("open level", err) {
			return log
		}
		dirs = append(dirs, fd)
		dir = fd
	}
	last := strings.Repeat("z", 255)
	atMax := long + "/" + last // 4,095 bytes
	if len(atMax) != unix.PathMax-1 {
		t.Fatalf("path of %d bytes", len(atMax))
	}
	rec("mkdir PATH_MAX-1", unix.Mkdirat(base, atMax, 0o755))
	rec("mkdir PATH_MAX", unix.Mkdirat(base, atMax+"x", 0o755))
	rec("mkdir PATH_MAX-1 again", unix.Mkdirat(base, atMax, 0o755))
	rec("rmdir PATH_MAX-1", unix.Unlinkat(base, atMax, unix.AT_REMOVEDIR))
	fd, err := unix.Openat(base, atMax, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if rec("create PATH_MAX-1", err) {
		_, err = unix.Write(fd, []byte("at the limit"))
		rec("write PATH_MAX-1", err)
		unix.Close(fd)
	}
	fd, err = unix.Openat(base, atMax, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if rec("open PATH_MAX-1", err) {
		unix.Close(fd)
	}
	// truncate(2) has no *at() form: from base as the working directory (no test here runs in
	// parallel, and the daemon never resolves a relative path).
	if cwd, err := os.Getwd(); rec("getwd", err) {
		if rec("chdir", unix.Fchdir(base)) {
			rec("truncate PATH_MAX-1", unix.Truncate(atMax, 3))
			rec("chdir back", unix.Chdir(cwd))
		}
	}
	sibling := long + "/" + strings.Repeat("y", 255)
	rec("link PATH_MAX-1", unix.Linkat(base, atMax, base, sibling, 0))
	rec("unlink link PATH_MAX-1", unix.Unlinkat(base, sibling, 0))
	rec("rename PATH_MAX-1", unix.Renameat(base, atMax, base, sibling))
	rec("rename PATH_MAX-1 back", unix.Renameat(base, sibling, base, atMax))
	rec("chmod PATH_MAX-1", unix.Fchmodat(base, atMax, 0o600, 0))
	rec("chown PATH_MAX-1", unix.Fchownat(base, atMax, 1234, 1234, unix.AT_SYMLINK_NOFOLLOW))
	rec("unlink PATH_MAX-1", unix.Unlinkat(base, atMax, 0))
	rec("mknod fifo PATH_MAX-1", unix.Mknodat(base, atMax, unix.S_IFIFO|0o644, 0))
	rec("unlink fifo PATH_MAX-1", unix.Unlinkat(base, atMax, 0))
	rec("symlink PATH_MAX-1", unix.Symlinkat("target", base, atMax))
	rec("unlink symlink PATH_MAX-1", unix.Unlinkat(base, atMax, 0))

	// Three more levels below, reached through descriptors: the path below top is 4,863 bytes.
	dir, err = unix.Openat(base, long, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if !rec("open deep", err) {
		return log
	}
	dirs = append(dirs, dir)
	for i := range 3 {
		c := strings.Repeat(strconv.Itoa(i), 255)
		if !rec("mkdir deeper", unix.Mkdirat(dir, c, 0o755)) {
			return log
		}
		fd, err := unix.Openat(dir, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if !rec("open deeper", err) {
			return log
		}
		dirs = append(dirs, fd)
		dir = fd
	}
	d := dir
	proc := func(name string) string { return fmt.Sprintf("/proc/self/fd/%d/%s", d, name) }
	stat := func(op, name string) {
		var st unix.Stat_t
		err := unix.Fstatat(d, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if rec(op, err) {
			log = append(log, fmt.Sprintf("  mode %o size %d nlink %d uid %d", st.Mode, st.Size, st.Nlink, st.Uid))
		}
	}

	rec("mkdir", unix.Mkdirat(d, "dir", 0o750))
	rec("mkdir existing", unix.Mkdirat(d, "dir", 0o750))
	rec("mkdir in missing", unix.Mkdirat(d, "missing/dir", 0o750))
	rec("mkdir sticky", unix.Mkdirat(d, "sticky", 0o1777))
	stat("stat sticky", "sticky")
	rec("mkfifo", unix.Mknodat(d, "fifo", unix.S_IFIFO|0o640, 0))
	rec("mkfifo existing", unix.Mknodat(d, "fifo", unix.S_IFIFO|0o640, 0))
	rec("mknod regular", unix.Mknodat(d, "reg", unix.S_IFREG|0o600, 0))
	stat("stat fifo", "fifo")

	fd, err = unix.Openat(d, "file", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if rec("create", err) {
		_, err = unix.Write(fd, []byte("deep content"))
		rec("write", err)
		rec("close", unix.Close(fd))
	}
	_, err = unix.Openat(d, "file", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	rec("create exclusive existing", err)
	_, err = unix.Openat(d, "missing", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	rec("open missing", err)
	fd, err = unix.Openat(d, "file", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if rec("open", err) {
		buf := make([]byte, 64)
		n, err := unix.Read(fd, buf)
		if rec("read", err) {
			log = append(log, "  read "+string(buf[:n]))
		}
		unix.Close(fd)
	}
	fd, err = unix.Openat(d, "file", unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
	if rec("open append", err) {
		_, err = unix.Write(fd, []byte(", appended"))
		rec("append", err)
		unix.Close(fd)
	}
	stat("stat file", "file")

	var sx unix.Statx_t
	if rec("statx with birth time", unix.Statx(d, "file", unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &sx)) {
		log = append(log, fmt.Sprintf("  mode %o size %d birth time %t", sx.Mode, sx.Size, sx.Mask&unix.STATX_BTIME != 0))
	}
	fd, err = unix.Openat(d, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if rec("tmpfile", err) {
		_, err = unix.Write(fd, []byte("unnamed"))
		rec("write tmpfile", err)
		unix.Close(fd)
	}
	rec("chmod", unix.Fchmodat(d, "file", 0o640, 0))
	rec("chmod missing", unix.Fchmodat(d, "missing", 0o640, 0))
	rec("chown", unix.Fchownat(d, "file", 1234, 4321, 0))
	rec("chown missing", unix.Fchownat(d, "missing", 1234, 4321, 0))
	rec("truncate", unix.Truncate(proc("file"), 4))
	rec("truncate missing", unix.Truncate(proc("missing"), 4))
	rec("truncate directory", unix.Truncate(proc("dir"), 4))
	rec("utimens", unix.UtimesNanoAt(d, "file", []unix.Timespec{{Sec: 1e9}, {Sec: 1e9}}, 0))
	stat("stat file changed", "file")
	rec("setxattr", unix.Setxattr(proc("file"), "user.deep", []byte("v"), 0))
	buf := make([]byte, 16)
	n, err := unix.Getxattr(proc("file"), "user.deep", buf)
	if rec("getxattr", err) {
		log = append(log, "  xattr "+string(buf[:n]))
	}
	rec("removexattr", unix.Removexattr(proc("file"), "user.deep"))

	rec("link", unix.Linkat(d, "file", d, "link", 0))
	rec("link existing", unix.Linkat(d, "file", d, "link", 0))
	rec("link missing", unix.Linkat(d, "missing", d, "link2", 0))
	rec("link into dir", unix.Linkat(d, "file", d, "dir/link", 0))
	stat("stat link", "link")
	rec("symlink", unix.Symlinkat("file", d, "sym"))
	rec("symlink existing", unix.Symlinkat("file", d, "sym"))
	n, err = unix.Readlinkat(d, "sym", buf)
	if rec("readlink", err) {
		log = append(log, "  target "+string(buf[:n]))
	}
	rec("chown symlink", unix.Fchownat(d, "sym", 1234, 4321, unix.AT_SYMLINK_NOFOLLOW))

	rec("rename", unix.Renameat(d, "file", d, "renamed"))
	rec("rename missing", unix.Renameat(d, "file", d, "renamed2"))
	rec("rename over", unix.Renameat(d, "reg", d, "renamed"))
	rec("rename into dir", unix.Renameat(d, "link", d, "dir/moved"))
	rec("rename dir over file", unix.Renameat(d, "sticky", d, "renamed"))
	rec("rename file over dir", unix.Renameat(d, "renamed", d, "sticky"))
	rec("rename noreplace", unix.Renameat2(d, "fifo", d, "sym", unix.RENAME_NOREPLACE))
	rec("rename exchange", unix.Renameat2(d, "renamed", d, "sym", unix.RENAME_EXCHANGE))
	stat("stat exchanged", "renamed")

	rec("unlink", unix.Unlinkat(d, "sym", 0))
	rec("unlink missing", unix.Unlinkat(d, "sym", 0))
	rec("unlink directory", unix.Unlinkat(d, "dir", 0))
	rec("rmdir non-empty", unix.Unlinkat(d, "dir", unix.AT_REMOVEDIR))
	rec("rmdir file", unix.Unlinkat(d, "renamed", unix.AT_REMOVEDIR))
	rec("unlink in dir", unix.Unlinkat(d, "dir/link", 0))
	rec("unlink moved", unix.Unlinkat(d, "dir/moved", 0))
	rec("rmdir", unix.Unlinkat(d, "dir", unix.AT_REMOVEDIR))
	rec("rmdir missing", unix.Unlinkat(d, "dir", unix.AT_REMOVEDIR))
	rec("rmdir sticky", unix.Unlinkat(d, "sticky", unix.AT_REMOVEDIR))

	// What is left, listed: renamed (the former reg) and fifo (the former sym).
	fd, err = unix.Openat(d, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if rec("opendir", err) {
		f := os.NewFile(uintptr(fd), "deep")
		names, err := f.Readdirnames(-1)
		f.Close()
		if rec("readdir", err) {
			slices.Sort(names)
			log = append(log, "  "+strings.Join(names, " "))
		}
	}
	// A file to hash and keep at that depth: the tree must know it after the run.
	fd, err = unix.Openat(d, "kept", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if rec("create kept", err) {
		_, err = unix.Write(fd, []byte("kept at depth"))
		rec("write kept", err)
		unix.Close(fd)
	}
	return log
}

func errnoName(err error) string {
	if en, ok := err.(unix.Errno); ok {
		if name := unix.ErrnoName(en); name != "" {
			return name
		}
	}
	return err.Error()
}
