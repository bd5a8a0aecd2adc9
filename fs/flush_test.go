package fs_test

import (
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	trowfs "github.com/trowfs/trowfs/fs"
	"github.com/trowfs/trowfs/fs/fstest"
)

// requests counts the requests of opcode op in go-fuse's request log (MountOptions.Debug, written
// to the standard logger) after its first from bytes.
func requests(log *syncBuffer, from int, op string) int {
	n := 0
	for line := range strings.Lines(log.String()[from:]) {
		if strings.Contains(line, "rx ") && strings.Contains(line, " "+op+" ") {
			n++
		}
	}
	return n
}

func mountLogged(t *testing.T, mode string) (*fstest.Env, *syncBuffer) {
	t.Helper()
	rl := &syncBuffer{}
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
		from := len(rl.String())
		write("new", os.O_CREATE|os.O_EXCL) // CREATE
		write("new", os.O_TRUNC)            // OPEN
		single := requests(rl, from, "FLUSH")
		if err := os.Link(m("new"), m("other")); err != nil {
			t.Fatal(err)
		}
		from = len(rl.String())
		write("new", os.O_APPEND)
		linked := requests(rl, from, "FLUSH")
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
