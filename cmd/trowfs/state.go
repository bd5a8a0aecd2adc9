package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/internal/tracker"
)

type stateCmd struct {
	Path string `arg:"" help:"A directory of a trowfs mount (or its .state file)." type:"path"`
}

// trowfsFSType is the file system type a trowfs mount has in /proc/self/mountinfo.
const trowfsFSType = "fuse.trowfs"

func (s *stateCmd) Run() error {
	p := s.Path
	if filepath.Base(p) != tracker.StateFileName {
		p = filepath.Join(p, tracker.StateFileName)
	}
	f, err := os.Open(p)
	if err != nil {
		return &exitError{ExitUsage, fmt.Sprintf("%s: %v (is %s inside a trowfs mount?)", p, err, s.Path)}
	}
	defer f.Close()
	// A real file named .state (in DATA, or anywhere else) is not a trowfs state: the file
	// opened must live on a trowfs mount. Checking the descriptor, not the path, leaves no
	// window for the path to change in between.
	if ok, why := onTrowfs(f); !ok {
		return &exitError{ExitUsage, fmt.Sprintf("%s is not on a trowfs mount (%s); give a directory of a mounted trowfs, not its data directory", s.Path, why)}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

// onTrowfs reports whether the open file f belongs to a trowfs mount: its file system is FUSE
// (statfs magic) and the mount its device number names has type fuse.trowfs.
func onTrowfs(f *os.File) (bool, string) {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		return false, "statfs: " + err.Error()
	}
	if sfs.Type != unix.FUSE_SUPER_MAGIC {
		return false, fmt.Sprintf("file system type %#x is not FUSE", sfs.Type)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false, "stat: " + err.Error()
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err.Error()
	}
	defer mi.Close()
	fstype, found := mountType(mi, unix.Major(st.Dev), unix.Minor(st.Dev))
	switch {
	case !found:
		return false, "its mount is not in /proc/self/mountinfo"
	case fstype != trowfsFSType:
		return false, "a FUSE file system of type " + fstype
	}
	return true, ""
}

// mountType returns the file system type of the mount with device major:minor in a
// /proc/self/mountinfo listing.
func mountType(r io.Reader, major, minor uint32) (string, bool) {
	dev := []byte(fmt.Sprintf("%d:%d", major, minor))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 3 || !bytes.Equal(fields[2], dev) {
			continue
		}
		for i, fl := range fields {
			if string(fl) == "-" && i+1 < len(fields) {
				return string(fields[i+1]), true
			}
		}
	}
	return "", false
}
