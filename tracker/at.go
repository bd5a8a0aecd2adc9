package tracker

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Paths below DATA can be longer than PATH_MAX (a deep tree made in DATA directly): the kernel
// refuses such a path in one openat2 or fstatat with ENAMETOOLONG. These helpers resolve rel
// from a directory descriptor in steps shorter than PATH_MAX, each beneath the directory the
// previous step opened, never following a symlink (not even one to a directory inside DATA),
// so depth does not matter and a short path resolves exactly as a deep one. A path that fits
// costs one openat2 (OpenBeneath; lstat adds an fstat, readlink a readlinkat of its directory:
// fstatat and readlinkat have no RESOLVE_ flags).

// stepMax bounds the bytes of rel resolved by one call (PATH_MAX is 4096 with its NUL).
const stepMax = unix.PathMax - 1

// beneathResolve is how every step resolves: beneath its starting directory, without magic links.
const beneathResolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// OpenBeneath opens rel (slash-separated, relative to the directory dirFd) with flags, never
// leaving dirFd's directory and never following a symlink: a final one fails with ELOOP (or is
// opened itself with O_PATH), an intermediate one with ELOOP or ENOTDIR. It works at any depth.
// The caller closes the descriptor.
func OpenBeneath(dirFd int, rel string, flags int) (int, error) {
	parent, last, err := walkParent(dirFd, rel)
	if err != nil {
		return -1, err
	}
	if parent != dirFd {
		defer unix.Close(parent)
	}
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW), Resolve: beneathResolve | unix.RESOLVE_NO_SYMLINKS}
	return openat2Retry(parent, last, &how)
}

// walkDir is walkParent down to the directory holding rel's last component: it returns a
// directory descriptor (dirFd itself, not to be closed, when rel is one name) and that name.
func walkDir(dirFd int, rel string) (int, string, error) {
	parent, last, err := walkParent(dirFd, rel)
	if err != nil {
		return -1, "", err
	}
	i := strings.LastIndexByte(last, '/')
	if i < 0 {
		return parent, last, nil
	}
	how := unix.OpenHow{Flags: uint64(unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC), Resolve: beneathResolve | unix.RESOLVE_NO_SYMLINKS}
	fd, err := openat2Retry(parent, last[:i], &how)
	if parent != dirFd {
		unix.Close(parent)
	}
	if err != nil {
		return -1, "", err
	}
	return fd, last[i+1:], nil
}

// lstatBeneath is lstat of rel below dirFd at any depth: the file itself (a final symlink is
// described, not followed) opened with O_PATH, then fstat.
func lstatBeneath(dirFd int, rel string, st *unix.Stat_t) error {
	fd, err := OpenBeneath(dirFd, rel, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fstat(fd, st)
}

// readlinkBeneath reads the symlink rel below dirFd at any depth.
func readlinkBeneath(dirFd int, rel string, buf []byte) (int, error) {
	parent, last, err := walkDir(dirFd, rel)
	if err != nil {
		return 0, err
	}
	if parent != dirFd {
		defer unix.Close(parent)
	}
	return unix.Readlinkat(parent, last, buf)
}

// walkParent returns a directory descriptor and a remainder of rel shorter than PATH_MAX such
// that the remainder names rel relative to the descriptor. For a short rel that is dirFd itself
// (not to be closed); otherwise an O_PATH descriptor the caller closes.
func walkParent(dirFd int, rel string) (int, string, error) {
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
		how := unix.OpenHow{Flags: uint64(unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC), Resolve: beneathResolve | unix.RESOLVE_NO_SYMLINKS}
		next, err := openat2Retry(fd, rel[:cut], &how)
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

func openat2Retry(dirFd int, name string, how *unix.OpenHow) (int, error) {
	for {
		fd, err := unix.Openat2(dirFd, name, how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err == unix.EPERM && how.Flags&unix.O_NOATIME != 0 {
			// O_NOATIME needs ownership (or CAP_FOWNER): read with atime updates instead.
			how.Flags &^= uint64(unix.O_NOATIME)
			continue
		}
		if err == unix.ENOSYS {
			// No openat2 (before Linux 5.6): plain openat, still without following a final link.
			return unix.Openat(dirFd, name, int(how.Flags), 0)
		}
		return fd, err
	}
}
