// Package mountinfo reads the kernel's mount table, /proc/self/mountinfo (proc(5)), for the
// mountpoint checks of server and for the tests and benchmarks that mount.
package mountinfo

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of the table.
type Mount struct {
	Major, Minor uint32 // the filesystem's device; for FUSE, Minor is the connection number in /sys/fs/fuse/connections
	Root         string // the directory of the filesystem mounted here ("/" unless a bind mount)
	Point        string // the mountpoint
	FSType       string
	Source       string // for trowfs: the data directory
}

// FUSE reports whether the mount is served by a FUSE daemon.
func (m Mount) FUSE() bool { return m.FSType == "fuse" || strings.HasPrefix(m.FSType, "fuse.") }

// Read returns the mounts this process sees, in the table's order (a later mount on the same
// path is stacked on an earlier one).
func Read() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m, ok := Parse(sc.Text()); ok {
			out = append(out, m)
		}
	}
	return out, sc.Err()
}

// Parse reads one line: "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw".
func Parse(line string) (Mount, bool) {
	pre, post, ok := strings.Cut(line, " - ")
	if !ok {
		return Mount{}, false
	}
	a, b := strings.Fields(pre), strings.Fields(post)
	if len(a) < 5 || len(b) < 2 {
		return Mount{}, false
	}
	maj, min, ok := strings.Cut(a[2], ":")
	if !ok {
		return Mount{}, false
	}
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return Mount{}, false
	}
	return Mount{Major: uint32(ma), Minor: uint32(mi), Root: Unescape(a[3]), Point: Unescape(a[4]), FSType: b[0], Source: Unescape(b[1])}, true
}

// Unescape undoes the kernel's \ooo escapes of spaces, tabs, newlines and backslashes.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
