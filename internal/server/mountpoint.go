package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/internal/mountinfo"
	"github.com/trowfs/trowfs/internal/statedir"
)

// MountpointInUseError says MNT is already a live FUSE mount (exit code 3, like a data directory
// in use): its server answers, so trowfs will not mount over it.
type MountpointInUseError struct {
	Mnt    string
	FSType string // e.g. fuse.trowfs
	Source string // what the mount says it serves (for trowfs: its data directory)
	Why    string // how it answered
}

func (e *MountpointInUseError) Error() string {
	if e.FSType == "" {
		return fmt.Sprintf("mountpoint %s is in use: %s; resume or unmount it (umount -l), or choose another mountpoint", e.Mnt, e.Why)
	}
	return fmt.Sprintf("mountpoint %s is in use: it is already a live %s mount of %s (%s); unmount it or choose another mountpoint",
		e.Mnt, e.FSType, e.Source, e.Why)
}

// probeTimeout bounds how long the liveness probe of a FUSE mount at MNT waits for its server.
const probeTimeout = 5 * time.Second

// checkTimeout bounds checkDirs as a whole. Resolving MNT stats it, and a FUSE mount at MNT or on
// the way to it whose server is stopped or hung never answers: the stat would block for ever,
// deaf to signals. It leaves room for the liveness probe's own probeTimeout.
const checkTimeout = 2 * probeTimeout

// checkDirs validates the data directory and the mountpoint and returns both resolved (absolute,
// no symbolic links). A dead FUSE mount left at MNT by a process that died (kill -9, a crash) is
// detached first; a live one is refused, and so is one that does not answer within checkTimeout
// (*MountpointInUseError). nonEmpty allows a mountpoint that holds entries.
func checkDirs(data, mnt string, nonEmpty bool, log *slog.Logger) (string, string, error) {
	type result struct {
		data, mnt string
		err       error
	}
	done := make(chan result, 1)
	go func() { // left blocked, if it blocks, until the process exits
		d, m, err := checkDirsNow(data, mnt, nonEmpty, log)
		done <- result{d, m, err}
	}()
	select {
	case r := <-done:
		return r.data, r.mnt, r.err
	case <-time.After(checkTimeout):
		return "", "", &MountpointInUseError{Mnt: mnt, Why: fmt.Sprintf(
			"it (or a directory on the way to it, or the data directory %s) did not answer within %v, as a FUSE mount whose server is stopped or hung does", data, checkTimeout)}
	}
}

func checkDirsNow(data, mnt string, nonEmpty bool, log *slog.Logger) (string, string, error) {
	if data == "" || mnt == "" {
		return "", "", &ConfigError{errors.New("both DATA and MNT are required")}
	}
	abs, err := filepath.Abs(data)
	if err != nil {
		return "", "", &ConfigError{err}
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", "", &ConfigError{fmt.Errorf("data directory %s: %w", data, err)}
	}
	if !st.IsDir() {
		return "", "", &ConfigError{fmt.Errorf("data directory %s is not a directory", data)}
	}
	dataReal, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", "", &ConfigError{fmt.Errorf("data directory %s: %w", data, err)}
	}
	if err := CheckTrowDB(dataReal); err != nil {
		return "", "", &ConfigError{err}
	}
	mabs, err := filepath.Abs(mnt)
	if err != nil {
		return "", "", &ConfigError{err}
	}
	mntReal, err := realPath(mabs, 0)
	if err != nil {
		return "", "", &ConfigError{fmt.Errorf("mountpoint %s: %w", mnt, err)}
	}
	// Before anything is created or detached: MNT may name a place inside DATA.
	if err := checkApart(data, dataReal, mnt, mntReal); err != nil {
		return "", "", err
	}
	if err := clearDeadMount(mntReal, log); err != nil {
		return "", "", err
	}
	mst, err := os.Stat(mntReal)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(mntReal, 0o755); err != nil {
			return "", "", &ConfigError{fmt.Errorf("create mountpoint: %w", err)}
		}
	} else if err != nil {
		return "", "", &ConfigError{fmt.Errorf("mountpoint %s: %w", mnt, err)}
	} else if !mst.IsDir() {
		return "", "", &ConfigError{fmt.Errorf("mountpoint %s is not a directory", mnt)}
	}
	// Again, now that MNT exists: its device and inode catch aliases such as bind mounts.
	if err := checkApart(data, dataReal, mnt, mntReal); err != nil {
		return "", "", err
	}
	if !nonEmpty {
		if name, err := firstEntry(mntReal); err != nil {
			return "", "", &ConfigError{fmt.Errorf("mountpoint %s: %w", mnt, err)}
		} else if name != "" {
			return "", "", &ConfigError{fmt.Errorf("mountpoint %s is not empty (it holds %q); the mount would hide its contents: use an empty directory, or pass --nonempty", mnt, name)}
		}
	}
	return dataReal, mntReal, nil
}

// CheckTrowDB refuses a DATA/trow.db that is anything but a regular file. The registry model
// opens trow.db with SQLite, often as root: SQLite follows a symbolic link (reading, and creating
// -wal and -shm files beside, whatever it points to, outside DATA too), and opening a FIFO blocks
// for ever. A missing trow.db is fine.
func CheckTrowDB(data string) error {
	var st unix.Stat_t
	err := unix.Lstat(filepath.Join(data, "trow.db"), &st)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return fmt.Errorf("data directory %s: trow.db: %w", data, err)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%s is %s, not a regular file; trowfs reads trow.db with SQLite and will not follow or open it (replace it with the database file itself)",
			filepath.Join(data, "trow.db"), statedir.Kind(st.Mode))
	}
	return nil
}

// realPath resolves every symbolic link in the absolute path p. Unlike filepath.EvalSymlinks it
// accepts a path whose tail does not exist yet (MNT is created if missing) or cannot be examined
// because it is a dead FUSE mount (ENOTCONN): the existing, examinable part is resolved and the
// rest appended.
func realPath(p string, depth int) (string, error) {
	if depth > 40 {
		return "", &os.PathError{Op: "resolve", Path: p, Err: unix.ELOOP}
	}
	r, err := filepath.EvalSymlinks(p)
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTCONN) {
		return "", err
	}
	parent := filepath.Dir(p)
	if parent == p {
		return "", err
	}
	rp, err := realPath(parent, depth+1)
	if err != nil {
		return "", err
	}
	q := filepath.Join(rp, filepath.Base(p))
	if fi, lerr := os.Lstat(q); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(q)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(rp, target)
		}
		return realPath(filepath.Clean(target), depth+1)
	}
	return q, nil
}

// checkApart refuses a data directory and a mountpoint that are the same directory or contain
// one another, by resolved path and by device and inode up each one's chain of parents (which
// also sees through bind mounts and other aliases).
func checkApart(data, dataReal, mnt, mntReal string) error {
	if within(dataReal, mntReal) || within(mntReal, dataReal) {
		return &ConfigError{fmt.Errorf("mountpoint %s and data directory %s must not contain each other (resolved: %s and %s)", mnt, data, mntReal, dataReal)}
	}
	return nil
}

// within reports whether inner is outer or below it: by path, by where each lies in the
// filesystem that holds it (a bind mount of a directory inside outer is inside outer), and by
// device and inode up inner's chain of parents.
func within(outer, inner string) bool {
	if pathWithin(outer, inner) {
		return true
	}
	if od, op, ok := fsLocation(outer); ok {
		if id, ip, ok := fsLocation(inner); ok && id == od && pathWithin(op, ip) {
			return true
		}
	}
	var ost unix.Stat_t
	if err := unix.Stat(outer, &ost); err != nil {
		return false // does not exist (yet): the path comparison is all there is
	}
	for p := inner; ; p = filepath.Dir(p) {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Dev == ost.Dev && st.Ino == ost.Ino {
			return true
		}
		if p == "/" || p == "." {
			return false
		}
	}
}

// pathWithin reports whether the clean absolute path inner is outer or below it.
func pathWithin(outer, inner string) bool {
	return inner == outer || strings.HasPrefix(inner, strings.TrimSuffix(outer, "/")+"/")
}

// fsLocation says where the absolute, resolved path p lies: the device of the filesystem that
// holds it (major:minor, from /proc/self/mountinfo) and p's path from that filesystem's own
// root. A bind mount shows a directory of a filesystem at a second path; the parent chain of
// that path never meets the directory's real parents, but its location is the same. p need not
// exist (a mountpoint yet to be created). ok is false without a readable mount table.
func fsLocation(p string) (dev, path string, ok bool) {
	ms, err := mountinfo.Read()
	if err != nil {
		return "", "", false
	}
	best := -1
	for _, m := range ms {
		// The longest mountpoint holding p; of mounts stacked on one path, the last (topmost).
		if pathWithin(m.Point, p) && len(m.Point) >= best {
			best = len(m.Point)
			dev = fmt.Sprintf("%d:%d", m.Major, m.Minor)
			path = filepath.Join(m.Root, strings.TrimPrefix(p, strings.TrimSuffix(m.Point, "/")))
		}
	}
	if best < 0 {
		return "", "", false
	}
	return dev, path, true
}

// firstEntry returns the name of one entry of dir ("" when it is empty).
func firstEntry(dir string) (string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return "", err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return names[0], nil
	}
	if err != nil && !errors.Is(err, io.EOF) { // io.EOF: the directory is empty
		return "", err
	}
	return "", nil
}

// mountAt returns the topmost mount whose mountpoint is exactly p.
func mountAt(p string) (mountinfo.Mount, bool, error) {
	ms, err := mountinfo.Read()
	var found mountinfo.Mount
	ok := false
	for _, m := range ms {
		if m.Point == p {
			found, ok = m, true
		}
	}
	return found, ok, err
}

// clearDeadMount looks at what is mounted on mnt. A FUSE mount whose server is gone (it answers
// ENOTCONN) is detached, its connection aborted, and that is logged; a live FUSE mount is
// *MountpointInUseError. Other mounts are left alone (a directory may be mounted on, e.g. tmpfs).
func clearDeadMount(mnt string, log *slog.Logger) error {
	for range 8 { // mounts can be stacked on one path
		m, ok, err := mountAt(mnt)
		if err != nil || !ok || !m.FUSE() {
			return nil // no mount table (nothing to learn from it), nothing mounted, or not FUSE
		}
		alive, why := probe(mnt)
		if alive {
			return &MountpointInUseError{Mnt: mnt, FSType: m.FSType, Source: m.Source, Why: why}
		}
		if err := detach(m); err != nil {
			return &MountError{fmt.Errorf("mountpoint %s is a dead FUSE mount (%s) and could not be detached: %w", mnt, why, err)}
		}
		log.Warn("detached a dead FUSE mount left on the mountpoint by a server that died", "mountpoint", mnt, "fstype", m.FSType, "source", m.Source, "probe", why)
	}
	return &MountError{fmt.Errorf("mountpoint %s: dead FUSE mounts keep reappearing", mnt)}
}

// probe asks the server of the FUSE mount at mnt for its filesystem statistics. ENOTCONN (or
// ECONNABORTED) means the server is gone. No answer within probeTimeout counts as alive: a
// server that is slow or stopped still owns its mount.
func probe(mnt string) (alive bool, why string) {
	done := make(chan error, 1)
	go func() {
		// statfs always reaches the server; stat may be answered from the kernel's attribute
		// cache long after the server died.
		var st unix.Statfs_t
		done <- unix.Statfs(mnt, &st)
	}()
	select {
	case err := <-done:
		switch {
		case err == nil:
			return true, "its server answers"
		case errors.Is(err, unix.ENOTCONN), errors.Is(err, unix.ECONNABORTED):
			return false, err.Error()
		default:
			return true, "its server answers: " + err.Error()
		}
	case <-time.After(probeTimeout):
		return true, fmt.Sprintf("its server did not answer within %v", probeTimeout)
	}
}

// detach aborts the FUSE connection of m (so nothing stays blocked on it) and unmounts it lazily.
func detach(m mountinfo.Mount) error {
	// Best effort: fusectl may not be mounted, and the kernel has usually aborted the connection
	// of a server that exited already.
	_ = os.WriteFile(fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", m.Minor), []byte("1"), 0)
	err := unix.Unmount(m.Point, unix.MNT_DETACH)
	if errors.Is(err, unix.EPERM) {
		// Not root: fusermount may unmount a FUSE mount of this user.
		for _, tool := range []string{"fusermount3", "fusermount"} {
			if out, e := exec.Command(tool, "-u", "-z", m.Point).CombinedOutput(); e == nil {
				err = nil
				break
			} else if !errors.Is(e, exec.ErrNotFound) {
				err = fmt.Errorf("%s -u -z: %v: %s", tool, e, strings.TrimSpace(string(out)))
			}
		}
	}
	if err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}
