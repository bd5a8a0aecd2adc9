package fs_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	trowfs "github.com/trowfs/trowfs/fs"
	"github.com/trowfs/trowfs/fs/fstest"
)

// syncBuffer is a log destination that the mount's goroutines may write concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A file renamed over through the mount while a descriptor still holds it is, natively, still
// that file: fstat, a reopen through /proc/self/fd and a chmod all reach it, even though its last
// link is gone. That holds with file handles and where DATA refuses them (here turned off through
// Options.NoFileHandles), where the node keeps a descriptor of its own; the mount says once that
// it runs without handles.
func TestReplacedFileStaysReachableWithAndWithoutHandles(t *testing.T) {
	for _, noHandles := range []bool{false, true} {
		name := "handles"
		if noHandles {
			name = "descriptors"
		}
		t.Run(name, func(t *testing.T) {
			var log syncBuffer
			e := fstest.Mount(t, fstest.Options{CacheTimeout: time.Nanosecond, Mount: func(o *trowfs.Options) {
				o.NoFileHandles = noHandles
				o.Logger = slog.New(slog.NewTextHandler(&log, nil))
			}})
			const n = 20
			var fds []int
			var inos []uint64
			for i := range n {
				p := filepath.Join(e.Mnt, "f"+strconv.Itoa(i))
				if err := os.WriteFile(p, []byte("old "+strconv.Itoa(i)), 0o644); err != nil {
					t.Fatal(err)
				}
				fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil {
					t.Fatal(err)
				}
				fds, inos = append(fds, fd), append(inos, st.Ino)
				if err := os.WriteFile(p+".new", []byte("new"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(p+".new", p); err != nil {
					t.Fatal(err)
				}
			}
			for i, fd := range fds {
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil {
					t.Fatalf("f%d: fstat of the replaced file: %v", i, err)
				}
				if st.Ino != inos[i] || st.Nlink != 0 {
					t.Fatalf("f%d: fstat gives ino %d with %d links, want the replaced file %d with none", i, st.Ino, st.Nlink, inos[i])
				}
				p := "/proc/self/fd/" + strconv.Itoa(fd)
				got, err := os.ReadFile(p)
				if err != nil || string(got) != "old "+strconv.Itoa(i) {
					t.Fatalf("f%d: read of the replaced file: %q, %v", i, got, err)
				}
				if err := os.Chmod(p, 0o600); err != nil {
					t.Fatalf("f%d: chmod of the replaced file: %v", i, err)
				}
				if err := unix.Fstat(fd, &st); err != nil || st.Mode&0o777 != 0o600 {
					t.Fatalf("f%d: mode %o after chmod (%v), want 600", i, st.Mode&0o777, err)
				}
			}
			refused := strings.Count(log.String(), "refuses file handles")
			if noHandles && refused != 1 {
				t.Errorf("the mount logged %d times that DATA refuses file handles, want once:\n%s", refused, log.String())
			}
			if !noHandles && refused != 0 {
				t.Errorf("the mount says DATA refuses file handles, which it does not here:\n%s", log.String())
			}
			e.AssertMatchesRescan()
		})
	}
}
