package trowfsbin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/internal/mountinfo"
)

// Mount is one line of /proc/self/mountinfo.
type Mount = mountinfo.Mount

// Mounts lists the mounts this process sees.
func Mounts() ([]Mount, error) { return mountinfo.Read() }

// FindMount returns the innermost mount on exactly the path mnt (made absolute and clean).
func FindMount(mnt string) (Mount, bool) {
	mnt = cleanAbs(mnt)
	ms, err := Mounts()
	if err != nil {
		return Mount{}, false
	}
	var found Mount
	ok := false
	for _, m := range ms {
		if m.Point == mnt {
			found, ok = m, true // later lines are mounted on top of earlier ones
		}
	}
	return found, ok
}

// Mounted reports whether something is mounted on mnt. It reads mountinfo and never touches
// the path itself.
func Mounted(mnt string) bool {
	_, ok := FindMount(mnt)
	return ok
}

// FUSEMountsUnder lists the FUSE mounts whose mountpoint is dir or below it.
func FUSEMountsUnder(dir string) []Mount {
	dir = cleanAbs(dir)
	ms, _ := Mounts()
	var out []Mount
	for _, m := range ms {
		if m.FUSE() && (m.Point == dir || strings.HasPrefix(m.Point, dir+"/")) {
			out = append(out, m)
		}
	}
	return out
}

func cleanAbs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return filepath.Clean(p)
}

// fuseConnections is where the kernel lists FUSE connections (the fusectl filesystem).
const fuseConnections = "/sys/fs/fuse/connections"

// Abort aborts the FUSE connection of m through fusectl: every request in flight and every
// later one fails with ENOTCONN, so nothing blocked on a hung server stays blocked. fusectl is
// mounted first if it is not (it is a harmless kernel view, present on most distributions).
func Abort(m Mount) error {
	if !m.FUSE() {
		return fmt.Errorf("%s is not a FUSE mount (%s)", m.Point, m.FSType)
	}
	if err := ensureFusectl(); err != nil {
		return err
	}
	p := filepath.Join(fuseConnections, strconv.FormatUint(uint64(m.Minor), 10), "abort")
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // the connection is gone already (its daemon exited)
		}
		return fmt.Errorf("abort %s: %w", p, err)
	}
	return nil
}

func ensureFusectl() error {
	ms, err := Mounts()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Point == fuseConnections && m.FSType == "fusectl" {
			return nil
		}
	}
	if err := unix.Mount("fusectl", fuseConnections, "fusectl", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount fusectl on %s: %w", fuseConnections, err)
	}
	return nil
}

// Detach unmounts mnt lazily (umount -l) if something is mounted there. When abort is true and
// the mount is FUSE, its connection is aborted first so that nothing stays blocked on it. It
// waits up to five seconds for the mount to disappear from mountinfo.
func Detach(mnt string, abort bool) error {
	m, ok := FindMount(mnt)
	if !ok {
		return nil
	}
	var errs []error
	if abort && m.FUSE() {
		if err := Abort(m); err != nil {
			errs = append(errs, err)
		}
	}
	for ok {
		if err := unix.Unmount(m.Point, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("umount -l %s: %w", m.Point, err))
			break
		}
		// A path can carry stacked mounts: detach until none is left.
		deadline := time.Now().Add(5 * time.Second)
		for {
			var again Mount
			again, ok = FindMount(mnt)
			if !ok || again != m || time.Now().After(deadline) {
				m = again
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if ok && time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("%s is still mounted after umount -l", mnt))
			break
		}
	}
	return errors.Join(errs...)
}

// AbortUnder aborts and detaches every FUSE mount below dir (deepest first) and returns what it
// found there. Use it to clean up after a test process; never on a directory other processes
// mount under.
func AbortUnder(dir string) ([]Mount, error) {
	found := FUSEMountsUnder(dir)
	var errs []error
	for i := len(found) - 1; i >= 0; i-- {
		if err := Detach(found[i].Point, true); err != nil {
			errs = append(errs, err)
		}
	}
	return found, errors.Join(errs...)
}
