package fs_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trowfs/trowfs/fs/fstest"
)

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// One process creates and unlinks r, one truncates it by path, one opens, writes and closes it,
// all at once. An open or truncate whose file is unlinked before the handler asks for its name
// gets an orphaned node: its path is not the root's "", and the tree must not hear of it as a
// file at "" (nor anywhere else).
func TestOpenTruncateUnlinkRaceRecordsNoPhantomFile(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		var log lockedBuffer
		e := fstest.Mount(t, fstest.Options{WriteMode: mode, Log: &log})
		r := filepath.Join(e.Mnt, "r")
		stop := time.Now().Add(3 * time.Second)
		ignorable := func(err error) bool { return err == nil || errors.Is(err, fs.ErrNotExist) }
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		var ops [3]int
		loop := func(i int, op func() error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					if err := op(); !ignorable(err) {
						errs <- err
						return
					}
					ops[i]++
				}
			}()
		}
		loop(0, func() error {
			f, err := os.OpenFile(r, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			f.Close()
			return os.Remove(r)
		})
		loop(1, func() error { return os.Truncate(r, 3) })
		loop(2, func() error {
			f, err := os.OpenFile(r, os.O_WRONLY|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			_, werr := f.Write([]byte("written"))
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			return werr
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		t.Logf("create+unlink %d, truncate %d, open+write %d", ops[0], ops[1], ops[2])
		e.AssertMatchesRescan()
		for _, f := range e.Tracker.Findings("") {
			if f.Path == "" {
				t.Errorf("finding at the root: %+v", f)
			}
		}
		for _, line := range strings.Split(log.String(), "\n") {
			if strings.Contains(line, "replaced a directory") || strings.Contains(line, `path=""`) {
				t.Errorf("log: %s", line)
			}
		}
	})
}
