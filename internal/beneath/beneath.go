// Package beneath is the one way trowfs opens a path below a directory it owns (DATA, or
// DATA/.trowfs) without ever leaving it: every component is resolved beneath the starting
// descriptor and no symbolic link is followed, not even one to a directory inside it, at any
// depth (paths longer than PATH_MAX included).
//
// Whoever can write DATA can plant symbolic links there, and trowfs often runs as root: the
// tracker's hashing and verification, the statedir and the offline `trowfs verify` all open
// files through this package, so they agree on what a path below DATA means. A final symlink
// fails with ELOOP (or is opened itself with O_PATH), an intermediate one with ELOOP or ENOTDIR,
// a ".." that would climb out with EXDEV.
//
// On kernels without openat2 (before Linux 5.6) the same rules hold: the path is walked one
// component at a time with O_NOFOLLOW.
package beneath

import (
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// stepMax bounds the bytes of a path resolved by one openat2 (PATH_MAX is 4096 with its NUL).
const stepMax = unix.PathMax - 1

// resolve is how every step resolves: beneath its starting directory, no symlinks, no magic links.
const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// noOpenat2 is set once openat2 reported ENOSYS (and by tests, to exercise the fallback).
var noOpenat2 atomic.Bool

// Open opens rel (slash-separated, relative to the directory dirFd) with flags (O_CLOEXEC and
// O_NOFOLLOW are always added), never leaving dirFd's directory and never following a symbolic
// link. The caller closes the descriptor. With O_NOATIME on a file the caller does not own, the
// file is opened without it (reads then update atime) rather than failing with EPERM.
func Open(dirFd int, rel string, flags int) (int, error) {
	return OpenMode(dirFd, rel, flags, 0)
}

// OpenMode is Open with the mode a file created by O_CREAT gets.
func OpenMode(dirFd int, rel string, flags int, mode uint32) (int, error) {
	parent, last, err := WalkParent(dirFd, rel)
	if err != nil {
		return -1, err
	}
	if parent != dirFd {
		defer unix.Close(parent)
	}
	return openat(parent, last, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, mode)
}

// Parent opens the directory holding rel's last component beneath dirFd (O_PATH) and returns it
// with that name. When rel is one name the descriptor is dirFd itself, not to be closed.
func Parent(dirFd int, rel string) (int, string, error) {
	parent, last, err := WalkParent(dirFd, rel)
	if err != nil {
		return -1, "", err
	}
	i := strings.LastIndexByte(last, '/')
	if i < 0 {
		return parent, last, nil
	}
	fd, err := openat(parent, last[:i], unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if parent != dirFd {
		unix.Close(parent)
	}
	if err != nil {
		return -1, "", err
	}
	return fd, last[i+1:], nil
}

// Lstat describes rel below dirFd at any depth without following a final symlink.
func Lstat(dirFd int, rel string, st *unix.Stat_t) error {
	fd, err := Open(dirFd, rel, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fstat(fd, st)
}

// Readlink reads the symbolic link rel below dirFd at any depth.
func Readlink(dirFd int, rel string, buf []byte) (int, error) {
	parent, last, err := Parent(dirFd, rel)
	if err != nil {
		return 0, err
	}
	if parent != dirFd {
		defer unix.Close(parent)
	}
	return unix.Readlinkat(parent, last, buf)
}

// WalkParent returns a directory descriptor and a remainder of rel shorter than PATH_MAX such
// that the remainder names rel relative to the descriptor. For a short rel that is dirFd itself
// (not to be closed); otherwise an O_PATH descriptor the caller closes.
func WalkParent(dirFd int, rel string) (int, string, error) {
	if rel == "" {
		return dirFd, ".", nil
	}
	fd := dirFd
	for len(rel) > stepMax {
		// The longest prefix of whole components that fits in one step.
		cut := strings.LastIndexByte(rel[:stepMax+1], '/')
		if cut <= 0 {
			if fd != dirFd {
				unix.Close(fd)
			}
			return -1, "", unix.ENAMETOOLONG // one component longer than a path can be
		}
		next, err := openat(fd, rel[:cut], unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if fd != dirFd {
			unix.Close(fd)
		}
		if err != nil {
			return -1, "", err
		}
		fd, rel = next, rel[cut+1:]
	}
	return fd, rel, nil
}

// openat opens name (shorter than PATH_MAX) beneath dirFd with openat2, or component by
// component where the kernel has no openat2.
func openat(dirFd int, name string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags), Mode: uint64(mode), Resolve: resolve}
	for !noOpenat2.Load() {
		fd, err := unix.Openat2(dirFd, name, &how)
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
			continue
		case err == unix.EPERM && how.Flags&unix.O_NOATIME != 0:
			// O_NOATIME needs ownership (or CAP_FOWNER): read with atime updates instead.
			how.Flags &^= uint64(unix.O_NOATIME)
			continue
		case err == unix.ENOSYS:
			noOpenat2.Store(true)
		default:
			return fd, err
		}
	}
	return openatSteps(dirFd, name, int(how.Flags), mode)
}

// openatSteps resolves name one component at a time, each opened with O_NOFOLLOW relative to
// the previous one, refusing "..": what openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS does.
func openatSteps(dirFd int, name string, flags int, mode uint32) (int, error) {
	if strings.HasPrefix(name, "/") {
		return -1, unix.EXDEV
	}
	comps := strings.Split(name, "/")
	fd := dirFd
	closeFd := func() {
		if fd != dirFd {
			unix.Close(fd)
		}
	}
	for i, c := range comps {
		if c == ".." {
			closeFd()
			return -1, unix.EXDEV
		}
		if i == len(comps)-1 {
			break
		}
		if c == "" || c == "." {
			continue
		}
		next, err := retry(func() (int, error) {
			return unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		})
		closeFd()
		if err != nil {
			return -1, err
		}
		fd = next
	}
	last := comps[len(comps)-1]
	if last == "" {
		last = "."
	}
	nfd, err := retry(func() (int, error) { return unix.Openat(fd, last, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode) })
	if err == unix.EPERM && flags&unix.O_NOATIME != 0 {
		nfd, err = retry(func() (int, error) {
			return unix.Openat(fd, last, (flags&^unix.O_NOATIME)|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
		})
	}
	closeFd()
	return nfd, err
}

func retry(f func() (int, error)) (int, error) {
	for {
		fd, err := f()
		if err != unix.EINTR {
			return fd, err
		}
	}
}
