package fs_test

import (
	"bytes"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	trowfs "github.com/trowfs/trowfs/fs"
	"github.com/trowfs/trowfs/fs/fstest"
)

// requestLog collects go-fuse's request log (MountOptions.Debug, written to the standard logger).
type requestLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *requestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count is how many requests of opcode op the log shows since the last reset.
func (l *requestLog) count(op string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for line := range strings.Lines(l.buf.String()) {
		if strings.Contains(line, "rx ") && strings.Contains(line, " "+op+" ") {
			n++
		}
	}
	return n
}

func (l *requestLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
}

func mountLogged(t *testing.T, mode string) (*fstest.Env, *requestLog) {
	t.Helper()
	rl := &requestLog{}
	prevOut, prevFlags := log.Writer(), log.Flags()
	log.SetOutput(rl)
	t.Cleanup(func() { log.SetOutput(prevOut); log.SetFlags(prevFlags) })
	e := fstest.Mount(t, fstest.Options{WriteMode: mode, Mount: func(o *trowfs.Options) { o.Debug = true }})
	return e, rl
}

// With kernel passthrough, closing a file written through the mount costs no FLUSH round trip
// (FOPEN_NOFLUSH) unless the file has other names, whose cached sizes close(2) must drop; in
// daemon write mode FLUSH stays (it writes back a shared mapping's dirty pages).
func TestCloseSendsFlushOnlyWhereItCarriesSomething(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e, rl := mountLogged(t, mode)
		if mode == trowfs.WritePassthrough && !e.Server.Passthrough() {
			t.Fatal("the kernel did not accept FUSE passthrough")
		}
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		write := func(name string, flags int) {
			f, err := os.OpenFile(m(name), os.O_WRONLY|flags, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte("content"))
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
		rl.reset()
		write("new", os.O_CREATE|os.O_EXCL) // CREATE
		write("new", os.O_TRUNC)            // OPEN
		single := rl.count("FLUSH")
		if err := os.Link(m("new"), m("other")); err != nil {
			t.Fatal(err)
		}
		rl.reset()
		write("new", os.O_APPEND)
		linked := rl.count("FLUSH")
		wantSingle := 0
		if mode == trowfs.WriteDaemon {
			wantSingle = 2
		}
		if single != wantSingle || linked != 1 {
			t.Errorf("FLUSH requests: %d for two closes of a file with one name (want %d), %d for a close of a file with two (want 1)",
				single, wantSingle, linked)
		}
		e.AssertMatchesRescan()
	})
}

// A name linked while the file is open for writing (so its close sent no FLUSH) still shows the
// writes once the file is closed, although its attributes were cached before.
func TestNameLinkedWhileOpenSeesTheWritesAfterClose(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	m := func(p string) string { return filepath.Join(e.Mnt, p) }
	f, err := os.OpenFile(m("a"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Link(m("a"), m("b")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(m("b")); err != nil || fi.Size() != 0 { // cached now
		t.Fatalf("stat b = %v, %v", fi, err)
	}
	f.Write([]byte("written after the link"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// RELEASE, which carries the refresh, is sent just after close(2) returned.
	deadline := time.Now().Add(5 * time.Second)
	for {
		fi, err := os.Stat(m("b"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() == int64(len("written after the link")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b still shows size %d 5 s after the writer closed", fi.Size())
		}
		time.Sleep(5 * time.Millisecond)
	}
	namesAgree(t, e, "writer closed", []byte("written after the link"), "a", "b")
	e.AssertMatchesRescan()
}
