// Package statedir is trowfs's own directory inside a data directory, DATA/.trowfs, opened so
// that nothing in it can redirect a read or a write outside DATA.
//
// Whoever can write DATA (normally the registry's own user) can plant symbolic links, hard links
// or FIFOs there. trowfs often runs as root, so every file it keeps in DATA/.trowfs is reached
// through one descriptor of that directory, opened beneath DATA without following links, and
// every name in it is opened, renamed and removed relative to that descriptor (openat2 with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, renameat, unlinkat), never by a path rebuilt from strings.
// A link planted at one of trowfs's names is replaced, never followed.
//
// Use Open for a process that owns DATA (the mount): it creates the directory, requires it to be a
// real directory owned by the effective user and tightens its mode to 0700. Use OpenReadOnly to
// read without changing anything (trowfs verify). Code that keeps more state in DATA/.trowfs
// (peer state, for example) should use the mount's Dir (tracker.Tracker.StateDir) and its methods
// rather than opening paths of its own.
//
// It must never follow a link, create anything outside DATA/.trowfs or take a name with a '/'.
package statedir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/internal/beneath"
)

// Name is the directory's name inside DATA.
const Name = ".trowfs"

// Mode is the permission the directory gets and keeps.
const Mode = 0o700

// UnsafeError says DATA/.trowfs is not something trowfs may use: a symbolic link, not a
// directory, or owned by another user. Nothing was read or written through it.
type UnsafeError struct {
	Path   string // DATA/.trowfs
	Reason string
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("%s %s; trowfs keeps its lock and snapshot there and refuses to use it (remove or fix it)", e.Path, e.Reason)
}

// Dir is an open DATA/.trowfs. Its methods are safe for concurrent use; they take names of
// entries directly inside it (no '/').
type Dir struct {
	fd   int    // O_RDONLY|O_DIRECTORY descriptor of DATA/.trowfs, opened without following links
	path string // DATA/.trowfs, for messages only: never opened by this path
}

// Open opens DATA/.trowfs for the process that owns DATA, creating it (mode 0700) if it is
// missing. It fails with *UnsafeError if the name is a symbolic link or anything but a
// directory, or if the directory belongs to another user; an existing directory's mode is
// tightened to 0700. DATA itself is opened as given (following links in that path is the
// caller's choice); nothing below it is followed.
func Open(data string) (*Dir, error) {
	dfd, err := unix.Open(data, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open data directory %s: %w", data, err)
	}
	defer unix.Close(dfd)
	return OpenAt(dfd, data)
}

// OpenAt is Open with DATA already open as dataFd (an O_PATH descriptor is enough); data names
// it in messages.
func OpenAt(dataFd int, data string) (*Dir, error) {
	p := filepath.Join(data, Name)
	if err := unix.Mkdirat(dataFd, Name, Mode); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	d, err := openDir(dataFd, p)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		d.Close()
		return nil, fmt.Errorf("stat %s: %w", p, err)
	}
	if uid := uint32(os.Geteuid()); st.Uid != uid {
		d.Close()
		return nil, &UnsafeError{Path: p, Reason: fmt.Sprintf("is owned by uid %d, not by the mounting user (uid %d)", st.Uid, uid)}
	}
	if st.Mode&0o7777 != Mode {
		if err := unix.Fchmod(d.fd, Mode); err != nil {
			d.Close()
			return nil, fmt.Errorf("chmod %s to %o: %w", p, Mode, err)
		}
	}
	return d, nil
}

// OpenReadOnly opens an existing DATA/.trowfs without creating or changing anything. A missing
// directory is an error satisfying errors.Is(err, os.ErrNotExist); a symbolic link or a
// non-directory is *UnsafeError. Ownership is not checked: nothing is written through it.
func OpenReadOnly(data string) (*Dir, error) {
	dfd, err := unix.Open(data, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open data directory %s: %w", data, err)
	}
	defer unix.Close(dfd)
	return openDir(dfd, filepath.Join(data, Name))
}

func openDir(dataFd int, p string) (*Dir, error) {
	fd, err := openBeneath(dataFd, Name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	switch {
	case err == nil:
		return &Dir{fd: fd, path: p}, nil
	case errors.Is(err, unix.ENOENT):
		return nil, &os.PathError{Op: "open", Path: p, Err: os.ErrNotExist}
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		var st unix.Stat_t
		if unix.Fstatat(dataFd, Name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return nil, &UnsafeError{Path: p, Reason: "is " + kind(st.Mode) + ", not a directory"}
		}
		return nil, &UnsafeError{Path: p, Reason: "is not a directory"}
	}
	return nil, fmt.Errorf("open %s: %w", p, err)
}

// Close releases the descriptor.
func (d *Dir) Close() error { return unix.Close(d.fd) }

// Path returns DATA/.trowfs, for messages.
func (d *Dir) Path() string { return d.path }

// Join returns the path of name inside the directory, for messages only.
func (d *Dir) Join(name string) string { return filepath.Join(d.path, name) }

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("statedir: %q is not a name inside %s", name, Name)
	}
	return nil
}

// openBeneath opens name relative to dirFd without following any link and without leaving
// dirFd: internal/beneath, the one beneath-DATA open.
func openBeneath(dirFd int, name string, flags int, mode uint32) (int, error) {
	return beneath.OpenMode(dirFd, name, flags, mode)
}

// Stat describes name without following it (a link is reported as a link).
func (d *Dir) Stat(name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := checkName(name); err != nil {
		return st, err
	}
	err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return st, &os.PathError{Op: "stat", Path: d.Join(name), Err: os.ErrNotExist}
	}
	return st, err
}

// Exists reports whether anything (of any type, links included) has name.
func (d *Dir) Exists(name string) bool {
	_, err := d.Stat(name)
	return err == nil
}

// OpenRead opens name for reading. Anything but a regular file (a link, a FIFO, a device) is
// refused; a missing file satisfies errors.Is(err, os.ErrNotExist).
func (d *Dir) OpenRead(name string) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var pre unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &pre, unix.AT_SYMLINK_NOFOLLOW); err == nil && pre.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &os.PathError{Op: "open", Path: d.Join(name), Err: fmt.Errorf("is %s, not a regular file", kind(pre.Mode))}
	}
	fd, err := openBeneath(d.fd, name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			err = os.ErrNotExist
		} else if errors.Is(err, unix.ELOOP) {
			err = errors.New("is a symbolic link, not a regular file")
		}
		return nil, &os.PathError{Op: "open", Path: d.Join(name), Err: err}
	}
	if err := requireRegular(fd); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: d.Join(name), Err: err}
	}
	return os.NewFile(uintptr(fd), d.Join(name)), nil
}

// requireRegular accepts a regular file with no other hard links: trowfs never links its files,
// so another name would be someone else's (a file outside DATA/.trowfs, perhaps).
func requireRegular(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("is %s, not a regular file", kind(st.Mode))
	}
	if st.Nlink != 1 {
		return fmt.Errorf("has %d hard links; trowfs's own files have one", st.Nlink)
	}
	return nil
}

// Kind names the file type of mode for messages ("a symbolic link", "a FIFO", ...).
func Kind(mode uint32) string { return kind(mode) }

// kind names a file type for messages.
func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	}
	return fmt.Sprintf("a file of mode %o", mode)
}

// OpenOwned opens name read-write (mode 0600 when created) for a file this process keeps open,
// such as a lock file. Whatever else has the name (a symbolic link, a FIFO, a file with other
// hard links, or one owned by another user) is removed first, without following it, and a new
// file is created in its place: an existing file is never written through a name someone else
// planted.
func (d *Dir) OpenOwned(name string) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	uid := uint32(os.Geteuid())
	for range 8 {
		// Never open what is not a regular file (opening a device or a FIFO can have effects).
		var pre unix.Stat_t
		if err := unix.Fstatat(d.fd, name, &pre, unix.AT_SYMLINK_NOFOLLOW); err == nil && pre.Mode&unix.S_IFMT != unix.S_IFREG {
			if err := d.removeAny(name); err != nil {
				return nil, err
			}
		}
		fd, err := openBeneath(d.fd, name, unix.O_RDWR|unix.O_NONBLOCK, 0)
		if errors.Is(err, unix.ENOENT) {
			fd, err = openBeneath(d.fd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
			if errors.Is(err, unix.EEXIST) {
				continue // someone else created it meanwhile: look at it again
			}
		}
		if err == nil {
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				unix.Close(fd)
				return nil, &os.PathError{Op: "stat", Path: d.Join(name), Err: err}
			}
			if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink == 1 && st.Uid == uid {
				if err := unix.SetNonblock(fd, false); err != nil {
					unix.Close(fd)
					return nil, err
				}
				return os.NewFile(uintptr(fd), d.Join(name)), nil
			}
			unix.Close(fd)
		} else if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENXIO) && !errors.Is(err, unix.EISDIR) {
			return nil, &os.PathError{Op: "open", Path: d.Join(name), Err: err}
		}
		// Not ours to write: take the name back.
		if err := d.removeAny(name); err != nil {
			return nil, err
		}
	}
	return nil, &os.PathError{Op: "open", Path: d.Join(name), Err: errors.New("replaced too often while opening")}
}

// removeAny removes name whether it is a file, a link or an empty directory. A directory with
// entries is *UnsafeError: they are not trowfs's to delete, and the name cannot be used beside them.
func (d *Dir) removeAny(name string) error {
	err := unix.Unlinkat(d.fd, name, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(d.fd, name, unix.AT_REMOVEDIR)
		if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			return &UnsafeError{Path: d.Join(name), Reason: "is a directory with entries where trowfs keeps a file of its own"}
		}
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: d.Join(name), Err: err}
	}
	return nil
}

// Reclaim frees name for a file of trowfs's own: a directory there (which a rename cannot
// replace) is removed if empty, and is *UnsafeError if it has entries. Anything else at the
// name is left for OpenOwned or WriteAtomic, which replace it without following it.
func (d *Dir) Reclaim(name string) error {
	st, err := d.Stat(name)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	return d.removeAny(name)
}

// Remove removes name (a link is removed, not what it points to). A missing name is not an error.
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := unix.Unlinkat(d.fd, name, 0)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: d.Join(name), Err: err}
	}
	return nil
}

// TempSuffix ends the names of WriteAtomic's temporary files.
const TempSuffix = ".tmp"

// WriteAtomic replaces name with what write produces: it writes a new file (mode 0600, created
// exclusively under a random name "<name>.<random>.tmp"), syncs it, renames it over name and
// syncs the directory. Whatever had the name before (a link included) is replaced, never
// followed. On any error the temporary file is removed and name is left as it was.
func (d *Dir) WriteAtomic(name string, write func(w io.Writer) error) error {
	if err := checkName(name); err != nil {
		return err
	}
	var tmp string
	var fd int
	for {
		var rnd [8]byte
		_, _ = rand.Read(rnd[:])
		tmp = name + "." + hex.EncodeToString(rnd[:]) + TempSuffix
		var err error
		fd, err = openBeneath(d.fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "create", Path: d.Join(tmp), Err: err}
		}
		break
	}
	f := os.NewFile(uintptr(fd), d.Join(tmp))
	err := write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if rerr := unix.Renameat(d.fd, tmp, d.fd, name); rerr != nil {
			err = &os.LinkError{Op: "rename", Old: d.Join(tmp), New: d.Join(name), Err: rerr}
		}
	}
	if err != nil {
		_ = unix.Unlinkat(d.fd, tmp, 0)
		return err
	}
	_ = unix.Fsync(d.fd)
	return nil
}

// WriteFile replaces name with b atomically (see WriteAtomic).
func (d *Dir) WriteFile(name string, b []byte) error {
	return d.WriteAtomic(name, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// RemoveTemps removes the temporary files WriteAtomic leaves behind when the process dies while
// writing (entries named "<prefix>.*.tmp"). Call it only while holding the directory's lock, so no
// other writer's temporary file is removed.
func (d *Dir) RemoveTemps(prefix string) (int, error) {
	fd, err := openBeneath(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: d.path, Err: err}
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, nm := range names {
		if strings.HasPrefix(nm, prefix+".") && strings.HasSuffix(nm, TempSuffix) {
			if unix.Unlinkat(d.fd, nm, 0) == nil {
				n++
			}
		}
	}
	return n, nil
}
