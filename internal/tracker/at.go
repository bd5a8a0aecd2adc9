package tracker

import (
	"github.com/trowfs/trowfs/internal/beneath"
)

// Paths below DATA can be longer than PATH_MAX (a deep tree made in DATA directly), and whoever
// writes DATA can plant symbolic links: every file the tracker reads is opened through
// internal/beneath, the one beneath-DATA open (hashing, verification, scans, `trowfs verify`),
// which resolves at any depth and never follows a link. These names keep the tracker's callers
// and tests reading as before.

// OpenBeneath opens rel (slash-separated, relative to the directory dirFd) with flags, never
// leaving dirFd's directory and never following a symlink: a final one fails with ELOOP (or is
// opened itself with O_PATH), an intermediate one with ELOOP or ENOTDIR. It works at any depth.
// The caller closes the descriptor. It is beneath.Open.
func OpenBeneath(dirFd int, rel string, flags int) (int, error) {
	return beneath.Open(dirFd, rel, flags)
}

// lstatBeneath is lstat of rel below dirFd at any depth (a final symlink is described).
var lstatBeneath = beneath.Lstat

// readlinkBeneath reads the symlink rel below dirFd at any depth.
var readlinkBeneath = beneath.Readlink

// walkParent returns a directory descriptor and a remainder of rel shorter than PATH_MAX.
var walkParent = beneath.WalkParent
